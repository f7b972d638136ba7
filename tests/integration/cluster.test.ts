/**
 * The distributed trainer as real processes on loopback (issue 4, "Proof"): `grpo coordinator`,
 * `grpo learner` and `grpo worker` children of the compiled CLI (dist/cli.js; build it with
 * `npx tsc -p .`), real WebSockets, the token in GRPO_TOKEN. One run, in order:
 *
 *   1. two workers sample and the learner steps;
 *   2. clients without the token, or with a wrong one, get HTTP 401 and the run goes on;
 *   3. an authenticated rogue's malformed frames get coded Errors and the run goes on;
 *   4. every reward is paused (the task's pause file), so each worker holds its lease; one worker
 *      is SIGKILLed holding it and the coordinator re-dispatches its groups;
 *   5. a worker added now gets the current weights at once and a lease; the pause ends and it
 *      reports batches;
 *   6. the learner finishes its steps and exits 0; the coordinator's ledger and the learner's
 *      summary, metrics.jsonl and checkpoint account for every group exactly once.
 *
 * The task is tests/fixtures/tasks/slow-reward-task.js: its reward answers after a fixed latency,
 * which paces the run (about 0.3 s per step with two workers), and waits while a pause file
 * exists. Every wait is on a log line or on GET /healthz, never a fixed sleep.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CoordinatorStats } from '../../src/coordinator/main.js';
import { encodeMessage } from '../../src/shared/codec.js';
import { Kind, PROTOCOL_VERSION, type Message } from '../../src/shared/protocol.js';
import { ProtocolClient } from '../../src/shared/ws-client.js';
import { RawPeer } from '../coordinator/helpers.js';
import {
  cliBuilt, GrpoProcess, healthz, killAll, SLOW_TASK, startCoordinatorProcess, startWorkerProcess, until,
  writeSlowTaskCheckpoint, type LogEvent,
} from './cluster-helpers.js';

const STEPS = 20;
const PROMPTS_PER_STEP = 2;
const GROUP_SIZE = 2;
const LATENCY_MS = 150; // per reward call; one reward thread per worker: 0.3 s per group
const TOKEN = randomBytes(12).toString('hex');
const WAIT_MS = 60_000; // generous: the CPU is shared with other test runs

if (!cliBuilt()) console.warn('skipping the cluster integration tests: dist/cli.js is missing; build it with `npx tsc -p .`');

describe.skipIf(!cliBuilt())('a cluster of real processes', () => {
  let root: string;
  let pauseFile: string; // while it exists, every reward call waits (see the task's pause_file)
  let out: string;
  const procs: GrpoProcess[] = [];
  let coordinator: GrpoProcess;
  let url: string;
  let http: string;
  let learner: GrpoProcess;
  let workers: GrpoProcess[];
  let killedLoad = 0;

  const stats = (): Promise<CoordinatorStats> => healthz(http);
  const lastStep = (): number => Math.max(0, ...learner.all('step').map((e) => e.step as number));
  /** Resolves at the learner's next step line: the run is still going. */
  const nextStep = (): Promise<LogEvent> => {
    const after = lastStep();
    return learner.waitForEvent('step', WAIT_MS, (e) => (e.step as number) > after);
  };

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'grpo-cluster-'));
    pauseFile = join(root, 'pause-rewards');
    out = join(root, 'run');
    const taskOptions = { latency_ms: LATENCY_MS, pause_file: pauseFile };
    const start = join(root, 'start');
    await writeSlowTaskCheckpoint(start, taskOptions);
    const c = await startCoordinatorProcess(TOKEN);
    procs.push(c.proc);
    ({ proc: coordinator, url, http } = c);
    workers = ['w0', 'w1'].map((name) => startWorkerProcess(url, TOKEN, name));
    procs.push(...workers);
    // prettier-ignore
    learner = new GrpoProcess('learner', [
      'learner', '--coordinator', url, '--checkpoint', start, '--out', out, '--steps', String(STEPS),
      '--task', SLOW_TASK, '--task-options', JSON.stringify(taskOptions), '--backend', 'cpu',
      '--group-size', String(GROUP_SIZE), '--prompts-per-step', String(PROMPTS_PER_STEP), '--max-gen-len', '3',
      '--max-staleness', '1', '--kl-coef', '0', '--eval-samples', '2', '--eval-interval', '0', '--save-interval', '0',
      '--reward-timeout-ms', '120000', // a paused reward must not time out
    ], { GRPO_TOKEN: TOKEN });
    procs.push(learner);
  }, WAIT_MS);

  afterAll(async () => {
    rmSync(pauseFile, { force: true });
    await killAll(procs);
    rmSync(root, { recursive: true, force: true });
  });

  it('runs a coordinator, a learner and two workers: both workers sample and the learner steps', async () => {
    await learner.waitForEvent('step', WAIT_MS, (e) => (e.step as number) >= 2);
    for (const w of workers) {
      const loaded = await w.waitForEvent('weights_loaded', WAIT_MS);
      expect(loaded.version).toBeGreaterThanOrEqual(0);
      const batch = await w.waitForEvent('batch', WAIT_MS);
      expect(batch).toMatchObject({ failed: 0 });
      expect(batch.groups).toBeGreaterThanOrEqual(1); // a continuous-batching stream reports all the groups it sampled
    }
    const h = await stats();
    expect(h.learner).not.toBeNull();
    expect(h.workers.filter((w) => w.ready).map((w) => w.name).sort()).toEqual(['w0', 'w1']);
    expect(h.ledger.admitted).toBeGreaterThanOrEqual(2 * PROMPTS_PER_STEP);
  }, WAIT_MS);

  it('refuses a client without the token or with a wrong one (HTTP 401) while the run goes on', async () => {
    const going = nextStep();
    expect(await upgradeStatus(url, {})).toBe(401);
    expect(await upgradeStatus(url, { authorization: 'Bearer not-the-token' })).toBe(401);
    const intruder = new ProtocolClient({ url, role: 'worker', name: 'intruder', token: 'not-the-token' });
    await expect(intruder.start()).rejects.toMatchObject({ code: 'GRPO_ERR_AUTH' });
    await intruder.close();
    await coordinator.waitFor(() => (coordinator.all('auth_refused').length >= 3 ? true : undefined), WAIT_MS, 'three auth_refused lines');
    expect(coordinator.all('auth_refused').map((e) => e.hasHeader)).toEqual([false, true, true]);

    const h = await stats();
    expect(h.workers.map((w) => w.name).sort()).toEqual(['w0', 'w1']); // nobody got in
    expect(h.learner).not.toBeNull();
    await going;
  }, WAIT_MS);

  it('answers malformed frames of an authenticated client with coded Errors and keeps the run going', async () => {
    const going = nextStep();
    const rogue = await RawPeer.connect(url, TOKEN);
    try {
      const expectError = async (code: string): Promise<void> => {
        const e = await rogue.next(Kind.Error, () => true, WAIT_MS);
        expect(e.code).toBe(code);
      };
      // (a bad first frame closes the connection with 4001: tests/coordinator/first-frame.test.ts)
      rogue.send({ kind: Kind.Hello, protocolVersion: PROTOCOL_VERSION, role: 'worker', name: 'rogue', capacity: 1, policyVersion: null });
      await rogue.next(Kind.Welcome, () => true, WAIT_MS);
      rogue.sendRaw(Uint8Array.from([0x82, 0xa4, 0x6b])); // a msgpack map cut short
      await expectError('GRPO_ERR_BAD_FRAME');
      rogue.sendRaw('{"kind": 3}'); // a text frame
      await expectError('GRPO_ERR_BAD_FRAME');
      rogue.sendRaw(encodeMessage({ kind: 99 } as unknown as Message));
      await expectError('GRPO_ERR_UNKNOWN_KIND');
      rogue.sendRaw(encodeMessage({ kind: Kind.Groups, leaseId: 'l1', results: 'none' } as unknown as Message));
      await expectError('GRPO_ERR_BAD_MESSAGE');
      rogue.sendRaw(Uint8Array.from([0x47, 0x52, 0x50, 0x57, 1, 0, 0, 0])); // "GRPW" chunk header cut short
      await expectError('GRPO_ERR_BAD_FRAME');
      rogue.send({ kind: Kind.Verdict, groupId: 'g', admitted: true, reason: 'ok' }); // a learner's message
      await expectError('GRPO_ERR_UNEXPECTED_MESSAGE');

      expect(rogue.ws.readyState).toBe(WebSocket.OPEN); // errors, not a disconnect
      await coordinator.waitFor(() => (coordinator.all('bad_frame').length >= 6 ? true : undefined), WAIT_MS, 'six bad_frame lines');
      const h = await stats();
      expect(h.workers.map((w) => w.name).sort()).toEqual(['rogue', 'w0', 'w1']);
      expect(h.workers.find((w) => w.name === 'rogue')).toMatchObject({ ready: false, load: 0 });
      expect(h.learner).not.toBeNull();
      await going;
    } finally {
      await rogue.close();
    }
  }, WAIT_MS);

  it('loses no group when a worker is SIGKILLed holding a lease: the coordinator re-dispatches it', async () => {
    writeFileSync(pauseFile, 'rewards wait while this file exists\n');
    // once no group has completed for a while, every worker is stuck inside its lease
    const quiet = await quietLedger(stats, 4 * GROUP_SIZE * LATENCY_MS);
    const victim = await until(async () => (await stats()).workers.find((w) => w.name === 'w1' && w.load > 0), WAIT_MS, 'w1 holding a lease');
    killedLoad = victim.load;
    workers[1].killGroup('SIGKILL');
    expect(await workers[1].exited).toMatchObject({ signal: 'SIGKILL' });

    const h = await until(async () => {
      const s = await stats();
      return s.workers.every((w) => w.name !== 'w1') && s.ledger.releasedLeases > quiet.ledger.releasedLeases ? s : undefined;
    }, WAIT_MS, 'the coordinator dropping w1');
    expect(h.ledger.redispatched - quiet.ledger.redispatched).toBeGreaterThanOrEqual(killedLoad);
    const g = h.ledger;
    expect(g.queued + g.leasedGroups + g.awaiting + g.done).toBe(g.enqueued); // every group is somewhere
    expect(g.queued).toBeGreaterThanOrEqual(killedLoad); // the dead worker's groups wait for another worker
    expect(h.learner).not.toBeNull();
  }, WAIT_MS);

  it('a worker added mid-run gets the current weights at once, then leases and batches', async () => {
    const late = startWorkerProcess(url, TOKEN, 'late');
    procs.push(late);
    const joined = await late.waitForEvent('joined', WAIT_MS);
    const first = await late.waitForEvent('weights_loaded', WAIT_MS);
    expect(first.version).toBeGreaterThanOrEqual(joined.weightsVersion as number); // never an older version first
    // rewards are paused, so the learner is waiting: the newest version stays put
    const h = await until(async () => {
      const s = await stats();
      return s.workers.some((w) => w.name === 'late' && w.ready && w.load > 0) ? s : undefined;
    }, WAIT_MS, 'the late worker holding a lease');
    const loaded = await late.waitFor(() => late.all('weights_loaded').find((e) => e.version === h.weights.version), WAIT_MS, 'the current version loaded');
    expect(loaded.version).toBe(h.policyVersion);

    rmSync(pauseFile);
    const batch = await late.waitForEvent('batch', WAIT_MS, (e) => (e.groups as number) >= 1);
    expect(batch).toMatchObject({ failed: 0, dropped: 0 });
    expect(batch.policyVersion).toBeGreaterThanOrEqual(h.weights.version as number);
  }, WAIT_MS);

  it('the learner finishes and exits 0; the ledger and the learner account for every group once', async () => {
    rmSync(pauseFile, { force: true }); // in case an earlier test failed with the rewards paused
    const exit = await until(() => learner.exit, 90_000, 'the learner exiting');
    expect(exit, learner.tail()).toEqual({ code: 0, signal: null });
    expect(learner.stdout.join('\n')).toMatch(new RegExp(`learner done: step ${STEPS}/${STEPS} `));

    const summary = learner.all('learner_done')[0] as unknown as LearnerDone;
    expect(summary).toMatchObject({ steps: STEPS, interrupted: false });
    const groups = summary.groups;
    expect(groups).toMatchObject({ trained: STEPS * PROMPTS_PER_STEP, duplicates: 0, unknown: 0, failed: 0 });
    expect(groups.redispatched).toBeGreaterThanOrEqual(killedLoad);

    const { ledger: g } = await stats();
    // the coordinator and the learner agree on every group
    expect(g.enqueued).toBe(groups.enqueued);
    expect(g.admitted).toBe(groups.admitted);
    expect(g.droppedStale).toBe(groups.droppedStale);
    expect(g.redispatched).toBe(groups.redispatched);
    // never forwarded twice, never lost
    expect(g).toMatchObject({ duplicates: 0, redelivered: 0, exhausted: 0, failed: 0, droppedDuplicate: 0, unknownVerdicts: 0, groupFailures: 0 });
    // each finished group was sent to the learner at most once (results that finished after the
    // learner left stay in the outbox: completed, not delivered), and every judged one was sent
    expect(g.delivered).toBeLessThanOrEqual(g.completed + g.exhausted);
    expect(g.delivered).toBeGreaterThanOrEqual(g.done);
    expect(g.done).toBe(groups.admitted + groups.droppedStale + groups.failed);
    expect(g.queued + g.leasedGroups + g.awaiting + g.done).toBe(g.enqueued);
    expect(g.completed + g.exhausted).toBe(g.awaiting + g.done);
    expect(g.done).toBe(g.admitted + g.droppedStale + g.droppedDuplicate + g.failed);
    expect(g.releasedLeases).toBeGreaterThanOrEqual(1);

    // one metrics line per step, and the data cursor: every trained prompt distinct, none skipped
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number });
    expect(metrics.map((m) => m.step)).toEqual(Array.from({ length: STEPS }, (_, i) => i + 1));
    const state = JSON.parse(readFileSync(join(out, 'checkpoint', 'trainer_state.json'), 'utf8')) as TrainerStateFile;
    const { next, pending } = state.dataCursor;
    expect(new Set(pending).size).toBe(pending.length);
    expect(pending.every((p) => p >= 0 && p < next)).toBe(true);
    expect(next - pending.length).toBe(STEPS * PROMPTS_PER_STEP);
    expect(state.step).toBe(STEPS);
  }, 100_000);
});

interface LearnerDone {
  steps: number;
  interrupted: boolean;
  groups: { enqueued: number; admitted: number; trained: number; droppedStale: number; failed: number; duplicates: number; unknown: number; redispatched: number };
}

interface TrainerStateFile {
  step: number;
  dataCursor: { next: number; pending: number[] };
}

/** The HTTP status a WebSocket upgrade gets (101 when it is accepted). */
function upgradeStatus(url: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      ws.terminate();
    });
    ws.once('open', () => {
      resolve(101);
      ws.terminate();
    });
    ws.once('error', reject);
  });
}

/** Polls /healthz until `completed` has not moved for `quietMs`; returns the last stats. */
async function quietLedger(stats: () => Promise<CoordinatorStats>, quietMs: number): Promise<CoordinatorStats> {
  let last = await stats();
  let since = Date.now();
  return until(async () => {
    const s = await stats();
    if (s.ledger.completed !== last.ledger.completed) since = Date.now();
    last = s;
    return Date.now() - since >= quietMs ? s : undefined;
  }, WAIT_MS, `no group completing for ${quietMs} ms`, 100);
}
