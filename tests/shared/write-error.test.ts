import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MetricsWriter } from '../../src/learner/logging.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { TrainingStatsWriter } from '../../src/shared/metrics/files.js';
import { writeFailure } from '../../src/shared/write-error.js';
import { readOnlyDir, SKIP_FULL_DISK, tinyDisk } from '../chaos/disk-helpers.js';

const codedNaming = (f: () => unknown, path: string, cause: RegExp): void => {
  try {
    f();
  } catch (err) {
    expect(isGrpoError(err, 'GRPO_ERR_CHECKPOINT_WRITE')).toBe(true);
    expect((err as Error).message).toContain(path);
    expect((err as Error).message).toMatch(cause);
    return;
  }
  throw new Error('no error');
};

describe('write failures are GRPO_ERR_CHECKPOINT_WRITE naming the file', () => {
  it('names the file for an ENOSPC that Node reports without it', () => {
    const enospc = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    const e = writeFailure('/runs/x/metrics.jsonl', enospc, 'metrics file');
    expect(e.code).toBe('GRPO_ERR_CHECKPOINT_WRITE');
    expect(e.message).toBe('cannot write metrics file /runs/x/metrics.jsonl: the disk is full (ENOSPC)');
    expect(writeFailure('/p', new Error('odd')).message).toBe('cannot write file /p: odd');
  });

  it('a read-only --out: metrics.jsonl, the CSV and training_stats.json', () => {
    const ro = readOnlyDir();
    if (ro === null) return void console.warn('skipped: cannot make a read-only directory here');
    try {
      const jsonl = join(ro.dir, 'metrics.jsonl');
      codedNaming(() => new MetricsWriter(jsonl, null, { append: false }), jsonl, /EACCES|EROFS/);
      const stats = join(ro.dir, 'training_stats.json');
      codedNaming(() => new TrainingStatsWriter(stats, { append: false }).write({ step: 1, loss: 0.5 }), stats, /EACCES|EROFS/);
    } finally {
      ro.cleanup();
    }
  });

  it('a full disk: the metrics file is named, with ENOSPC in words', (ctx) => {
    const disk = tinyDisk();
    if (disk === null) return ctx.skip(SKIP_FULL_DISK);
    try {
      writeFileSync(join(disk.dir, 'filler'), Buffer.alloc(200 * 1024));
      const jsonl = join(disk.dir, 'metrics.jsonl');
      const w = new MetricsWriter(jsonl, null, { append: false });
      const big = { step: 1, blob: 'x'.repeat(128 * 1024) };
      codedNaming(() => w.write(big as never), jsonl, /disk is full \(ENOSPC\)/);
      expect(existsSync(join(disk.dir, 'filler'))).toBe(true);
    } finally {
      disk.cleanup();
    }
  });
});
