/**
 * Smoke test of the compiled CLI (dist/cli.js, built by `npm test`'s set-up step or
 * `npx tsc -p .`): exit codes, the coded error line, JSON on stdout and logs on stderr.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeTinyCheckpoint } from './fixture.js';

const CLI = resolve('dist/cli.js');
const built = existsSync(CLI);
if (!built) console.warn(`skipping CLI smoke tests: ${CLI} is missing; build it with \`npx tsc -p .\` (npm test does)`);

function grpo(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe.skipIf(!built)('grpo CLI (compiled)', () => {
  let root: string;
  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'grpo-cli-'));
    await writeTinyCheckpoint(join(root, 'ckpt'), { seed: 1, task_options: {} });
  });
  afterAll(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('score prints JSON on stdout and logs the engine choice on stderr', () => {
    const r = grpo('score', '--checkpoint', join(root, 'ckpt'), '--prompt', '1+2=', '--completion', '3', '--eos');
    expect(r.stderr).toMatch(/"event":"engine"/);
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.completionIds).toHaveLength(2);
    expect(out.logprobs).toHaveLength(2);
  });

  it('prints `error GRPO_ERR_X: message` and exits non-zero on failures', () => {
    const missing = grpo('eval', '--checkpoint', join(root, 'nope'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^error GRPO_ERR_CHECKPOINT_NOT_FOUND: no checkpoint at /m);
    const usage = grpo('sft', '--no-such-flag');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^error GRPO_ERR_USAGE: unknown option '--no-such-flag'/m);
    const help = grpo('--help');
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/sft.*\n.*eval.*\n.*score/s);
  });
});
