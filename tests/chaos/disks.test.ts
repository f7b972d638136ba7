/**
 * Chaos: read-only and full disks. A checkpoint that cannot be written is GRPO_ERR_CHECKPOINT_WRITE
 * naming the file, and the previous checkpoint stays byte-identical. The full disk is a 256 KiB
 * tmpfs (root only: skipped otherwise); the metrics files' cases are in tests/shared/write-error.test.ts.
 */
import { readdirSync, readFileSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { saveCheckpoint } from '../../src/model/checkpoint.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { writeTinyCheckpoint } from '../commands/fixture.js';
import { readOnlyDir, SKIP_FULL_DISK, tinyDisk } from './disk-helpers.js';
import { loadCheckpoint } from '../../src/model/checkpoint.js';

const snapshot = (dir: string): Record<string, string> =>
  Object.fromEntries(readdirSync(dir).map((f) => [f, readFileSync(join(dir, f)).toString('base64')]));

async function writeFailureOf(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    expect(isGrpoError(err, 'GRPO_ERR_CHECKPOINT_WRITE')).toBe(true);
    return err as Error;
  }
  throw new Error('the save did not fail');
}

describe('chaos: disks', () => {
  it('a read-only --out: the checkpoint save names the directory it cannot write', async () => {
    const ro = readOnlyDir();
    if (ro === null) return void console.warn('skipped: cannot make a read-only directory here');
    try {
      const target = join(ro.dir, 'checkpoint');
      const err = await writeFailureOf(writeTinyCheckpoint(target, { seed: 1, task_options: {} }));
      expect(err.message).toMatch(/cannot write checkpoint .*\/checkpoint: .*(EACCES|EROFS)/);
      expect(err.stack ?? '').not.toContain('GRPO_ERR_INTERNAL');
    } finally {
      ro.cleanup();
    }
  });

  it('a full disk: ENOSPC names the file, and the previous checkpoint is byte-identical', async (ctx) => {
    const disk = tinyDisk();
    if (disk === null) return ctx.skip(SKIP_FULL_DISK);
    try {
      const dir = join(disk.dir, 'checkpoint');
      await writeTinyCheckpoint(dir, { seed: 1, task_options: {} });
      const before = snapshot(dir);
      const free = statfsSync(disk.dir);
      writeFileSync(join(disk.dir, 'filler'), Buffer.alloc(Math.max(0, free.bavail * free.bsize - 4096))); // one page left
      const ckpt = await loadCheckpoint(dir);
      const err = await writeFailureOf(saveCheckpoint(dir, { config: ckpt.config, weights: ckpt.weights, tokenizer: ckpt.tokenizer }));
      expect(err.message).toMatch(/cannot write checkpoint file .*\.checkpoint\.tmp-[^/]+\/\S+: the disk is full \(ENOSPC\)/);
      expect(snapshot(dir)).toEqual(before);
    } finally {
      disk.cleanup();
    }
  });
});
