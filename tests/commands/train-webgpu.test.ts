/**
 * `grpo train --backend webgpu` through the compiled CLI: SFT, the learner and one worker process
 * all on the WebGPU route (lavapipe in CI). A few tiny steps: the point is that the route runs a
 * whole training loop, not speed. Skipped, with the probe's reason, where no WebGPU adapter exists
 * (failing instead under GRPO_REQUIRE_TOOLS=1, as tests/engine/webgpu.test.ts explains).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { describeProbe, probeGpu } from '../../src/engine/webgpu.js';

const CLI = resolve('dist/cli.js');
const probe = await probeGpu();
const skipReason = !existsSync(CLI)
  ? `${CLI} is missing; build it with \`npx tsc -p .\``
  : process.env.GRPO_WEBGPU_SKIP || (probe.adapters.length === 0 ? `no WebGPU adapter: ${describeProbe(probe)}` : null);
if (skipReason) console.warn(`[webgpu] skipping grpo train --backend webgpu: ${skipReason}`);

describe.skipIf(skipReason !== null)('grpo train --backend webgpu (compiled CLI)', () => {
  it('trains a few steps with the learner and a worker on webgpu', async () => {
    const out = await mkdtemp(join(tmpdir(), 'grpo-webgpu-'));
    try {
      // prettier-ignore
      const r = spawnSync(process.execPath, [CLI,
        'train', '--out', out, '--backend', 'webgpu', '--device', '0', '--steps', '2', '--sft-steps', '3', '--sft-batch-size', '8',
        '--model-size', 'tiny', '--workers', '1', '--worker-capacity', '2', '--eval-samples', '4',
        '--prompts-per-step', '2', '--group-size', '4', '--max-gen-len', '6', '--task-options', 'max_digits=1,max_depth=1',
      ], { encoding: 'utf8', timeout: 240_000, env: { ...process.env, GRPO_TOKEN: '' } });
      expect(r.stderr).not.toMatch(/^error GRPO_ERR/m);
      expect(r.status).toBe(0);
      const events = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
      const engines = events.filter((e) => e.event === 'engine');
      expect(engines.map((e) => [e.worker ?? 'learner', e.backend])).toEqual([['learner', 'webgpu'], [0, 'webgpu']]);
      const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8'));
      expect(summary.steps).toBe(2);
      expect(summary.groups.admitted).toBeGreaterThanOrEqual(4);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 300_000);
});
