/**
 * `grpo eval --compare A B`: in-process (identical checkpoints give zero deltas; coded errors) and
 * through the compiled CLI (dist/cli.js: `npx tsc -p .` first), which prints the table and writes
 * the JSON file.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compareCommand } from '../../src/commands/eval-compare.js';
import { parseConfig } from '../../src/shared/config.js';
import { initEngine } from '../../src/engine/backend.js';
import { saveCheckpoint } from '../../src/model/checkpoint.js';
import { LlamaModel } from '../../src/model/llama.js';
import { createTask, tokenizerForTask } from '../../src/tasks/index.js';
import { captureIO } from './helpers.js';
import { tinyLlamaConfig } from '../helpers.js';

const CLI = resolve('dist/cli.js');

/** A tiny random arithmetic policy; `init` picks its weights. */
async function writePolicy(dir: string, init: number, task = 'arithmetic'): Promise<void> {
  const t = createTask('arithmetic', { seed: 9, options: { max_depth: 1 } });
  const tokenizer = tokenizerForTask(t);
  const config = tinyLlamaConfig(tokenizer, { initializer_range: 0.3 });
  const model = LlamaModel.create(config, init);
  try {
    await saveCheckpoint(dir, {
      config,
      weights: await model.toHostTensors(),
      tokenizer,
      trainerState: { step: 0, policyVersion: 0, dataCursor: null, rng: null, config: parseConfig({ seed: 9, task, task_options: { max_depth: 1 } }) },
    });
  } finally {
    model.dispose();
  }
}

let root: string;
beforeAll(async () => {
  await initEngine({ backend: 'auto', log: () => {} });
  root = await mkdtemp(join(tmpdir(), 'grpo-compare-'));
  await writePolicy(join(root, 'base'), 11);
  await writePolicy(join(root, 'tuned'), 12);
  await cp(join(root, 'base'), join(root, 'copy'), { recursive: true });
});
afterAll(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('grpo eval --compare (in-process)', () => {
  it('scores both on the same problems: a copy of A differs from A by nothing', async () => {
    const cap = captureIO();
    const r = await compareCommand({ compare: [join(root, 'base'), join(root, 'copy')], samples: '6', k: '2' }, cap.io);
    expect(r.names).toEqual(['base', 'copy']);
    expect(r).toMatchObject({ task: 'arithmetic', seed: 9, samples: 6, k: 2, n: 2 });
    expect(r.rows.map((x) => x.metric)).toEqual(['accuracy (greedy)', 'pass@2', 'mean@2', 'majority@2', 'mean completion tokens', 'truncated']);
    for (const row of r.rows) {
      expect(row.a).not.toBeNull();
      expect(row.delta).toBe(0);
    }
    expect(r.reports[0].examples).toEqual(r.reports[1].examples);
    expect(cap.out[0]).toMatch(/^metric\s+base\s+copy\s+delta$/m);
  });

  it('fails with coded errors', async () => {
    const io = captureIO().io;
    const code = { code: 'GRPO_ERR_EVAL_OPTIONS' };
    await expect(compareCommand({ compare: [join(root, 'base')] }, io)).rejects.toMatchObject(code);
    await expect(compareCommand({ compare: [join(root, 'base'), join(root, 'copy')], names: 'one' }, io)).rejects.toMatchObject(code);
    await expect(compareCommand({ compare: [join(root, 'base'), join(root, 'copy')], checkpoint: join(root, 'base') }, io)).rejects.toMatchObject(code);
    const other = join(root, 'other-task');
    await writePolicy(other, 13, 'countdown');
    await expect(compareCommand({ compare: [join(root, 'base'), other] }, io)).rejects.toThrow(/pick the task .* with --task/);
  });
});

describe.skipIf(!existsSync(CLI))('grpo eval --compare (compiled CLI)', () => {
  it('prints the side-by-side table and writes it as JSON', async () => {
    const out = join(root, 'cmp.json');
    // prettier-ignore
    const r = spawnSync(process.execPath, [
      CLI, 'eval', '--compare', join(root, 'base'), join(root, 'tuned'), '--names', 'baseline,grpo',
      '--samples', '8', '--k', '4', '--out', out,
    ], { encoding: 'utf8', timeout: 60_000 });
    expect(r.stderr).not.toMatch(/^error /m);
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^arithmetic .* seed 9: 8 held-out problems, k=4 \(n=4, temperature 1\)$/);
    expect(lines[2]).toMatch(/^metric\s+baseline\s+grpo\s+delta$/);
    for (const metric of ['accuracy \\(greedy\\)', 'pass@4', 'mean@4', 'majority@4', 'truncated']) {
      expect(r.stdout).toMatch(new RegExp(`^${metric}\\s+\\d+\\.\\d%\\s+\\d+\\.\\d%\\s+[-+]?\\d+\\.\\d$`, 'm'));
    }
    const json = JSON.parse(await readFile(out, 'utf8'));
    expect(json.names).toEqual(['baseline', 'grpo']);
    expect(json.checkpoints).toEqual([join(root, 'base'), join(root, 'tuned')]);
    const acc = json.rows.find((x: { metric: string }) => x.metric === 'accuracy (greedy)');
    expect(acc.delta).toBeCloseTo(acc.b - acc.a, 12);
    expect(acc.a).toBe(json.reports[0].accuracy);
    expect(acc.b).toBe(json.reports[1].accuracy);
  });
});
