/**
 * Chaos on a cluster of real processes (dist/cli.js, loopback, role credentials, deterministic
 * mode, a tiny model): the attempts of a fake learner and of a fake module are refused; a worker
 * is SIGKILLed and replaced; the learner is SIGKILLed after its step-3 loss and resumed from its
 * step-2 checkpoint, and its step 3 is the same to the last bit; the coordinator is SIGKILLed and
 * restarted on its port; the run ends with every prompt trained once.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Kind, PROTOCOL_VERSION, WireError } from '../../src/shared/protocol.js';
import { writeTinyCheckpoint } from '../commands/fixture.js';
import { RawPeer } from '../coordinator/helpers.js';
import { SAMPLES } from '../shared/protocol-samples.js';
import { GrpoProcess, killAll } from '../integration/cluster-helpers.js';
import { freePorts } from '../shared/metrics/helpers.js';
import './chaos-helpers.js'; // fails early without dist/

const TOKENS = { GRPO_TOKEN: '', GRPO_WORKER_TOKEN: 'worker-secret', GRPO_LEARNER_TOKEN: 'learner-secret' };
const WORKER_ENV = { GRPO_TOKEN: '', GRPO_WORKER_TOKEN: TOKENS.GRPO_WORKER_TOKEN };
const LEARNER_ENV = { GRPO_TOKEN: '', GRPO_LEARNER_TOKEN: TOKENS.GRPO_LEARNER_TOKEN };
const TASK_OPTIONS = { max_digits: 1, max_depth: 1 };
const RUN_FLAGS = [
  '--backend', 'cpu', '--seed', '5', '--deterministic', 'true', '--task-options', 'max_digits=1,max_depth=1',
  '--group-size', '4', '--prompts-per-step', '4', '--max-gen-len', '6', '--micro-batch-size', '8', '--lr', '0.02',
  '--lr-schedule', 'constant', '--warmup-steps', '0', '--dynamic-sampling', 'false', '--reward-weights', 'format=0.5,partial=1',
  '--eval-samples', '2', '--eval-interval', '0', '--save-interval', '2', '--heartbeat-ms', '500',
];

let root: string;
const procs: GrpoProcess[] = [];
const track = (p: GrpoProcess): GrpoProcess => (procs.push(p), p);

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'grpo-chaos-'));
  await writeTinyCheckpoint(join(root, 'init'), { seed: 5, task_options: TASK_OPTIONS });
});

afterAll(async () => {
  await killAll(procs);
  await rm(root, { recursive: true, force: true });
});

const coordinator = (port: number): GrpoProcess => track(new GrpoProcess('coordinator', ['coordinator', '--port', String(port), '--heartbeat-ms', '500'], TOKENS));
const worker = (url: string, name: string): GrpoProcess =>
  track(new GrpoProcess(name, ['worker', '--coordinator', url, '--name', name, '--backend', 'cpu', '--worker-capacity', '2', '--reward-threads', '1'], WORKER_ENV));
const stepLoss = (p: GrpoProcess, step: number): Promise<number> => p.waitForEvent('step', 90_000, (e) => e.step === step).then((e) => e.loss as number);

describe('chaos: a cluster of processes', () => {
  it('refuses the fake learner and the fake module, survives worker, learner and coordinator kills, trains each prompt once', async () => {
    const port = await freePorts(1);
    const url = `ws://127.0.0.1:${port}`;
    let coord = coordinator(port);
    await coord.waitFor(() => coord.stdout.find((l) => l.includes('listening')), 30_000, 'listening');
    const workers = [worker(url, 'w0'), worker(url, 'w1')];

    // a worker credential cannot open a learner session
    const fake = await RawPeer.connect(url, TOKENS.GRPO_WORKER_TOKEN);
    fake.send({ kind: Kind.Hello, protocolVersion: PROTOCOL_VERSION, role: 'learner', name: 'fake', capacity: 0, policyVersion: null });
    expect((await fake.next(Kind.Error)).code).toBe(WireError.RoleForbidden);
    expect((await fake.closed).code).toBe(4006);

    // a RunSpec naming a module the workers do not allow: nothing is imported
    await Promise.all(workers.map((w) => w.waitForEvent('joined', 30_000)));
    const marker = join(root, 'imported');
    const evil = join(root, 'evil-task.mjs');
    writeFileSync(evil, `import { writeFileSync } from 'node:fs'; writeFileSync(${JSON.stringify(marker)}, 'x'); export default {};\n`);
    const { peer: holder } = await RawPeer.join(url, 'learner', { token: TOKENS.GRPO_LEARNER_TOKEN, runSpec: false });
    const sample = SAMPLES[Kind.RunSpec];
    holder.send({ ...sample, spec: { ...sample.spec, runId: 'evil', task: { ...sample.spec.task, name: evil } } });
    for (const w of workers) expect((await w.waitForEvent('run_spec_failed', 30_000)).code).toBe('GRPO_ERR_NOT_ALLOWED');
    expect(existsSync(marker)).toBe(false);
    await holder.close(); // a normal close frees the slot for the real run

    const out = join(root, 'run');
    const first = track(new GrpoProcess('learner-1', ['learner', '--coordinator', url, '--checkpoint', join(root, 'init'), '--out', out, '--steps', '5', ...RUN_FLAGS], LEARNER_ENV));
    await stepLoss(first, 1);
    workers[0].killGroup('SIGKILL'); // holding leases or not: its groups are re-dispatched
    workers.push(worker(url, 'w2'));
    const killedLoss3 = await stepLoss(first, 3);
    first.killGroup('SIGKILL');
    await first.exited;

    const resumed = track(new GrpoProcess('learner-2', ['learner', '--coordinator', url, '--resume', join(out, 'checkpoint'), '--steps', '5'], LEARNER_ENV));
    expect(await stepLoss(resumed, 3)).toBe(killedLoss3); // deterministic mode: the same step, the same loss
    coord.killGroup('SIGKILL');
    await coord.exited;
    coord = coordinator(port); // the same address: every client reconnects on its own
    const exit = await resumed.exited;
    expect(exit.code).toBe(0);
    expect(resumed.all('learner_connected').length).toBeGreaterThanOrEqual(2); // it went on through the restarted coordinator

    const stats = JSON.parse(readFileSync(join(out, 'training_stats.json'), 'utf8')) as { step: number[] };
    expect(stats.step).toEqual([1, 2, 3, 4, 5]);
    const state = JSON.parse(readFileSync(join(out, 'checkpoint', 'trainer_state.json'), 'utf8')) as { step: number; groups: { trained: number } };
    expect(state.step).toBe(5);
    expect(state.groups.trained).toBe(5 * 4); // each of the 20 prompts trained once, across both learners
  });
});
