/**
 * deploy/slurm/grpo.sbatch: `bash -n` and, when installed, `shellcheck`; then a dry run of the
 * whole script under bash on a fake 3-node allocation with 2 GPUs per node, with srun, scontrol,
 * curl and node replaced by stubs that record their arguments. The recorded `grpo` command lines
 * must parse with the real CLI, and the placement must be: coordinator and learner on the first
 * node, one worker per GPU on the others, each with its own GPU and metrics port, all of which
 * appear in the Prometheus targets file the script writes.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CONFIG } from '../../src/shared/config.js';
import { DEFAULT_METRICS_PORTS } from '../../src/shared/metrics/server.js';
import { cliOptions, deployPath, dryParse, flagValue, ROOT, run, toolOrSkip } from './helpers.js';

const SCRIPT = deployPath('slurm', 'grpo.sbatch');
const shellcheck = toolOrSkip('shellcheck', 'shellcheck of deploy/slurm/grpo.sbatch');

const NODES = ['gpu-a', 'gpu-b', 'gpu-c'];
const GPUS = 2;
const SEP = '\u001f'; // the stubs join arguments with the unit separator

let tmp: string;
let result: { status: number | null; output: string };
let srunCalls: string[][];
let grpoCalls: string[][];

function stub(bin: string, name: string, body: string): void {
  const path = join(bin, name);
  writeFileSync(path, `#!/usr/bin/env bash\n${body}\n`);
  chmodSync(path, 0o755);
}

function readCalls(file: string): string[][] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter((l) => l.length > 0).map((l) => l.split(SEP).slice(0, -1));
}

/** Runs the script on a fake allocation of NODES x GPUS (stubs for scontrol, srun, curl, node) in a fresh folder. */
function harness(extraEnv: Record<string, string> = {}): { tmp: string; result: typeof result; srunCalls: string[][]; grpoCalls: string[][] } {
  const tmp = mkdtempSync(join(tmpdir(), 'grpo-slurm-'));
  const bin = join(tmp, 'bin');
  mkdirSync(bin);
  // one printf, so one write(2) per call: steps run concurrently, and two writes per line let
  // another step's line land between a call's arguments and its newline
  const record = (file: string) => `line=$(printf '%s${SEP}' "$@"); printf '%s\\n' "$line" >> "${join(tmp, file)}"`;
  stub(bin, 'scontrol', `printf '%s\\n' ${NODES.join(' ')}`);
  stub(bin, 'curl', 'exit 0');
  // srun: record the call, drop its options (all written --opt=value or --flag), run the rest;
  // it ignores SIGTERM (inherited by the exec'd stub), so the script's clean-up at exit cannot
  // stop a step before it has recorded its command line
  stub(bin, 'srun', `trap '' TERM\n${record('srun.calls')}\nwhile [ $# -gt 0 ] && [ "\${1#--}" != "$1" ]; do shift; done\nexec "$@"`);
  stub(bin, 'node', record('grpo.calls'));
  const env = {
    PATH: `${bin}:${process.env.PATH}`,
    HOME: tmp,
    SLURM_JOB_ID: '4242',
    SLURM_JOB_NODELIST: 'gpu-[a-c]',
    SLURM_SUBMIT_DIR: tmp,
    SLURM_GPUS_ON_NODE: String(GPUS),
    GRPO_TOKEN: 'test-token',
    ...extraEnv,
  };
  const result = run('bash', [SCRIPT], { cwd: tmp, env });
  const srunCalls = readCalls(join(tmp, 'srun.calls'));
  const grpoCalls = readCalls(join(tmp, 'grpo.calls')).map((argv) => argv.slice(1)); // drop dist/cli.js
  return { tmp, result, srunCalls, grpoCalls };
}

beforeAll(() => {
  ({ tmp, result, srunCalls, grpoCalls } = harness());
});

afterAll(() => {
  rmSync(tmp, { recursive: true, force: true });
});

/** The srun options and the grpo argv of each step, matched in order of the calls. */
function steps(): { node: string; gpus: string | undefined; argv: string[] }[] {
  return srunCalls.map((call) => {
    const opts = call.filter((a) => a.startsWith('--'));
    const i = call.indexOf('node');
    const argv = call.slice(i + 2);
    const opt = (name: string) => opts.find((o) => o.startsWith(`--${name}=`))?.split('=')[1];
    return { node: opt('nodelist')!, gpus: opt('gpus') ?? (opts.includes('--gres=none') ? '0' : undefined), argv };
  });
}

describe('deploy/slurm/grpo.sbatch', () => {
  it('passes bash -n', () => {
    const r = run('bash', ['-n', SCRIPT]);
    expect(r.status, r.output).toBe(0);
  });

  it.skipIf(!shellcheck)('passes shellcheck', () => {
    const r = run('shellcheck', [SCRIPT]);
    expect(r.output).toBe('');
    expect(r.status).toBe(0);
  });

  it('runs to the end on a fake allocation', () => {
    expect(result.output).toMatch(/learner exited with status 0/);
    expect(result.status, result.output).toBe(0);
  });

  it('starts only grpo command lines the real CLI accepts', async () => {
    expect(grpoCalls.length).toBe(1 + (NODES.length - 1) * GPUS + 2); // coordinator, workers, sft, learner
    for (const argv of grpoCalls) await expect(dryParse(argv), argv.join(' ')).resolves.toBeUndefined();
    expect(grpoCalls.every((argv) => argv.length > 0)).toBe(true);
    const options = cliOptions();
    for (const argv of grpoCalls) {
      for (const flag of argv.filter((a) => a.startsWith('--'))) expect(options.get(argv[0])?.has(flag), `grpo ${argv[0]} ${flag}`).toBe(true);
    }
  });

  it('puts the coordinator, SFT and the learner on the first node and one worker per GPU on the others', () => {
    const s = steps();
    const byRole = (role: string) => s.filter((x) => x.argv[0] === role);
    const [coordinator] = byRole('coordinator');
    expect(coordinator.node).toBe(NODES[0]);
    expect(coordinator.gpus).toBe('0');
    expect(flagValue(coordinator.argv, '--port')).toBe(String(DEFAULT_CONFIG.port));
    expect(flagValue(coordinator.argv, '--host')).toBe('0.0.0.0');
    for (const role of ['sft', 'learner']) {
      const [x] = byRole(role);
      expect(x.node, role).toBe(NODES[0]);
      expect(x.gpus, role).toBe('1');
    }
    const workers = byRole('worker');
    expect(workers.map((w) => w.node).sort()).toEqual(NODES.slice(1).flatMap((n) => Array(GPUS).fill(n)).sort());
    for (const w of workers) {
      expect(w.gpus).toBe('1');
      expect(flagValue(w.argv, '--backend')).toBe('webgpu'); // the GPU route that works on CUDA 12 nodes
      expect(flagValue(w.argv, '--device')).toBe('0'); // the step's one GPU
      expect(flagValue(w.argv, '--coordinator')).toBe(`ws://${NODES[0]}:${DEFAULT_CONFIG.port}`);
    }
    const learner = byRole('learner')[0].argv;
    expect(flagValue(learner, '--backend')).toBe('webgpu');
    expect(flagValue(byRole('sft')[0].argv, '--backend')).toBe('webgpu');
    expect(flagValue(learner, '--coordinator')).toBe(`ws://${NODES[0]}:${DEFAULT_CONFIG.port}`);
    expect(flagValue(learner, '--metrics-port')).toBe(String(DEFAULT_METRICS_PORTS.learner));
    expect(flagValue(learner, '--checkpoint')).toBe(flagValue(byRole('sft')[0].argv, '--out'));
  });

  it('gives workers on one node distinct metrics ports and lists every role in the Prometheus targets file', () => {
    const s = steps();
    const targets = new Set<string>();
    for (const w of s.filter((x) => x.argv[0] === 'worker')) targets.add(`${w.node}:${flagValue(w.argv, '--metrics-port')}`);
    expect(targets.size).toBe((NODES.length - 1) * GPUS);
    targets.add(`${NODES[0]}:${DEFAULT_METRICS_PORTS.coordinator}`);
    targets.add(`${NODES[0]}:${DEFAULT_METRICS_PORTS.learner}`);
    const file = JSON.parse(readFileSync(join(tmp, 'runs', 'grpo_4242', 'prometheus-targets.json'), 'utf8')) as { targets: string[]; labels: Record<string, string> }[];
    expect(new Set(file[0].targets)).toEqual(targets);
    expect(file[0].labels).toEqual({ slurm_job: '4242' });
  });

  it('uses a run configuration that exists in the repository by default', () => {
    const configs = new Set(grpoCalls.map((argv) => flagValue(argv, '--config')).filter((c): c is string => c !== undefined));
    expect([...configs]).toEqual([join(tmp, 'deploy', 'compose', 'grpo.yaml')]);
    expect(() => readFileSync(join(ROOT, 'deploy', 'compose', 'grpo.yaml'))).not.toThrow();
  });
});

describe('deploy/slurm/grpo.sbatch with GPU_DEVICE_PER_STEP=1', () => {
  it('gives the worker on GPU g of a node --device g (steps not device-constrained, the device-select layer on the nodes)', async () => {
    const h = harness({ GPU_DEVICE_PER_STEP: '1' });
    try {
      expect(h.result.status, h.result.output).toBe(0);
      const workers = h.grpoCalls.filter((argv) => argv[0] === 'worker');
      expect(workers).toHaveLength((NODES.length - 1) * GPUS);
      for (const argv of workers) {
        await expect(dryParse(argv), argv.join(' ')).resolves.toBeUndefined();
        const g = /-gpu(\d+)$/.exec(flagValue(argv, '--name') ?? '')![1];
        expect(flagValue(argv, '--device'), argv.join(' ')).toBe(g);
      }
      expect(new Set(workers.map((argv) => flagValue(argv, '--device')))).toEqual(new Set(Array.from({ length: GPUS }, (_, g) => String(g))));
    } finally {
      rmSync(h.tmp, { recursive: true, force: true });
    }
  });
});
