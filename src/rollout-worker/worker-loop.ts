/**
 * The rollout worker's one loop. Message handlers only record what arrived (the newest RunSpec,
 * the newest weights, leases) and wake the loop; the loop does all the work, one thing at a time:
 *
 *   1. apply a pending RunSpec (tokenizer, task, reward pool; see run-state.ts);
 *   2. load pending weights (build or overwrite the model) and send Ready with their version;
 *   3. take up to `groupsPerCall` waiting groups across leases, sample and score them in one
 *      rolloutGroups call, and report them per lease (Groups, GroupFailed); or, where the native
 *      decoder runs, stream the waiting groups through a pool of groupsPerCall x groupSize rows
 *      (continuous batching, continuous.ts), reporting each group as soon as it is scored;
 *   4. yield to the event loop, so pings, heartbeats and incoming frames are handled, and repeat.
 *
 * Weights therefore change only between sampling calls, never mid-sequence, and every group of a
 * call carries the version that sampled it. sample() is synchronous tensor work as far as the
 * event loop is concerned; a call that takes more than a quarter of the coordinator's peer
 * timeout halves `groupsPerCall` (and quick calls double it back up to the capacity), so a slow
 * machine still heartbeats in time.
 *
 * Results of a lease revoked, or lost with the connection, while its groups were being sampled
 * are not sent: the coordinator has re-queued them and would only count them stale. They are
 * counted in `groupsDropped`.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { GrpoError, toGrpoError } from '../shared/errors.js';
import type { WorkerMetrics } from './prometheus.js';
import { epochField } from '../shared/epoch.js';
import { Kind } from '../shared/protocol.js';
import type { GroupRollout, GroupSpec, LeaseMsg, Message, ProtocolLogger, RunSpec } from '../shared/protocol.js';
import type { ReceivedWeights } from '../shared/ws-client.js';
import { LeaseQueue } from './lease-queue.js';
import type { LeaseEntry, TakenGroup } from './lease-queue.js';
import { nativeDecodeBlocker } from '../model/decode-path.js';
import { streamGroups } from './continuous.js';
import { isGroupFailure, rolloutGroups, rolloutIsolated } from './rollout.js';
import type { RolloutBatch, RolloutContext, RolloutTiming } from './rollout.js';
import type { AdapterPath } from '../model/llama.js';
import { RunState } from './run-state.js';
import { workerTrust } from './trust.js';
import type { WorkerTrust } from './trust.js';

/** What the loop sends: ProtocolClient.send, or a test double. */
export type SendFn = (msg: Message) => boolean;

export interface WorkerLoopOptions {
  name: string;
  capacity: number; // most groups per sampling call (the coordinator never leases more)
  rewardThreads: number;
  loraSampling?: AdapterPath; // LoRA: adapters merged into the weights (default) or beside them (run-state.ts)
  trust?: WorkerTrust; // what a RunSpec may make this worker import or call; default: built-in tasks only, no remote reward
  send: SendFn;
  log: ProtocolLogger;
  /** Latency histograms (rollout and reward time per group, weights load time). */
  metrics?: WorkerMetrics;
  /**
   * Continuous batching (default true): where the native decoder runs, groups stream through a
   * pool of rows and are reported one by one as they finish (continuous.ts); otherwise, or with a
   * substituted `rollout`, groups are sampled in batches of groupsPerCall.
   */
  continuous?: boolean;
  /** The compute step; rolloutGroups unless a test substitutes it. */
  rollout?: (ctx: RolloutContext, specs: readonly GroupSpec[]) => Promise<RolloutBatch>;
}

export interface WorkerCounters {
  leases: number; // Lease messages received
  leasesRevoked: number;
  groupsDone: number; // sent in Groups
  groupsFailed: number; // sent as GroupFailed
  groupsDropped: number; // finished for a lease no longer current; not sent
  batches: number; // rolloutGroups calls
  completions: number; // rows sampled
  tokensGenerated: number; // completion tokens, stop tokens included
  sampleSeconds: number; // wall time inside sample(), summed over calls
  rewardSeconds: number; // wall time scoring, summed over calls
  weightsLoaded: number; // versions loaded
  weightsSeconds: number; // wall time loading them, summed
}

export class WorkerLoop {
  readonly counters: WorkerCounters = {
    leases: 0,
    leasesRevoked: 0,
    groupsDone: 0,
    groupsFailed: 0,
    groupsDropped: 0,
    batches: 0,
    completions: 0,
    tokensGenerated: 0,
    sampleSeconds: 0,
    rewardSeconds: 0,
    weightsLoaded: 0,
    weightsSeconds: 0,
  };
  readonly run: RunState;
  private readonly leases = new LeaseQueue();
  private readonly rollout: NonNullable<WorkerLoopOptions['rollout']>;
  private pendingSpec: RunSpec | null = null;
  private pendingWeights: ReceivedWeights | null = null;
  private stopRequested = false;
  private kicked = false;
  private wakeUp: (() => void) | null = null;
  private samplingPath = ''; // logged when it changes
  /** Groups per sampling call: the capacity, lowered while calls run past the time budget. */
  groupsPerCall: number;
  /** Longest a sampling call should block the event loop, seconds (peerTimeoutMs / 4 once welcomed). */
  sampleBudgetSeconds = 5;

  constructor(private readonly opts: WorkerLoopOptions) {
    this.run = new RunState({ rewardThreads: opts.rewardThreads, loraSampling: opts.loraSampling, log: opts.log, trust: opts.trust ?? workerTrust([], []) });
    this.groupsPerCall = opts.capacity;
    this.rollout = opts.rollout ?? rolloutGroups;
  }

  /** True once stop() was called. */
  get stopping(): boolean {
    return this.stopRequested;
  }

  get waitingGroups(): number {
    return this.leases.waitingGroups;
  }

  // --- what the message handlers call -------------------------------------------------------

  onRunSpec(spec: RunSpec): void {
    this.pendingSpec = spec;
    this.wake();
  }

  /** Only the newest version is kept: an older one still waiting is never loaded. */
  onWeights(w: ReceivedWeights): void {
    if (this.pendingWeights !== null) this.opts.log('info', 'weights_skipped', { version: this.pendingWeights.version, newer: w.version });
    this.pendingWeights = w;
    this.wake();
  }

  onLease(lease: LeaseMsg): void {
    this.counters.leases += 1;
    if (!this.leases.add(lease)) {
      this.opts.log('warn', 'lease_ignored', { lease: lease.leaseId, groups: lease.groups.length, reason: 'repeated id or no groups' });
      return;
    }
    this.opts.log('debug', 'lease', { lease: lease.leaseId, groups: lease.groups.length, policyVersion: lease.policyVersion });
    this.wake();
  }

  onLeaseRevoked(leaseId: string): void {
    this.counters.leasesRevoked += 1;
    const lost = this.leases.revoke(leaseId);
    this.opts.log('warn', 'lease_revoked', { lease: leaseId, unreportedGroups: lost });
  }

  /** The connection closed: the coordinator re-dispatches every lease of the old session. */
  onDisconnect(): number {
    return this.leases.clear();
  }

  // --- the loop -------------------------------------------------------------------------------

  /** Runs until stop(); finishes the batch in progress first. Rejects only on a bug. */
  async runLoop(): Promise<void> {
    while (!this.stopRequested) {
      if (await this.step()) await yieldToEventLoop();
      else await this.idle();
    }
  }

  stop(): void {
    this.stopRequested = true;
    this.wake();
  }

  /** One unit of work; false when there is nothing to do until something arrives. */
  private async step(): Promise<boolean> {
    if (this.pendingSpec !== null) {
      const spec = this.pendingSpec;
      this.pendingSpec = null;
      await this.applySpec(spec);
      return true;
    }
    if (this.pendingWeights !== null && this.run.canLoadWeights) {
      this.swapWeights(this.pendingWeights);
      this.pendingWeights = null;
      return true;
    }
    if (this.leases.waitingGroups === 0) return false;
    if (this.run.error !== null) {
      this.failWaiting(this.run.error);
      return true;
    }
    const ctx = this.run.context();
    if (ctx === null) return false; // no weights for this run yet: the leases wait for them
    if (this.streams(ctx)) await this.stream(ctx);
    else await this.batch(ctx, this.leases.take(this.groupsPerCall));
    return true;
  }

  private idle(): Promise<void> {
    if (this.kicked) {
      this.kicked = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      this.wakeUp = resolve;
    });
  }

  private wake(): void {
    const w = this.wakeUp;
    this.wakeUp = null;
    if (w === null) this.kicked = true;
    else w();
  }

  private async applySpec(spec: RunSpec): Promise<void> {
    const t0 = performance.now();
    const change = await this.run.applySpec(spec);
    if (change === null) {
      this.opts.log('debug', 'run_spec_unchanged', { run: spec.runId });
      return;
    }
    const err = this.run.error;
    if (err !== null) {
      this.opts.log('error', 'run_spec_failed', { run: spec.runId, task: spec.task.name, code: err.code, error: err.message });
      return;
    }
    const seconds = (performance.now() - t0) / 1000;
    this.opts.log('info', 'run_spec', { ...this.run.describe(), replaced: change.replaced, modelReset: change.model, rewardsReset: change.rewards, seconds });
    if (change.model && this.pendingWeights === null) {
      this.opts.log('warn', 'awaiting_weights', { run: spec.runId, reason: 'the model changed; sampling resumes when the learner publishes weights for it' });
    }
  }

  private swapWeights(w: ReceivedWeights): void {
    try {
      const seconds = this.run.loadWeights(w.version, w.tensors, w.adapter, w.epoch);
      this.counters.weightsLoaded += 1;
      this.counters.weightsSeconds += seconds;
      this.opts.metrics?.observeWeightsLoad(seconds);
      this.opts.log('info', 'weights_loaded', { version: w.version, ...epochField(w.epoch), encoding: w.encoding, tensors: w.tensors.size, seconds, ...(w.adapter ? { lora: w.adapter.base === w.version ? 'base' : 'adapters' } : {}) });
      this.opts.send({ kind: Kind.Ready, policyVersion: w.version });
    } catch (err) {
      const e = toGrpoError(err, 'GRPO_ERR_WEIGHTS_LOAD');
      this.opts.log('error', 'weights_rejected', { version: w.version, code: e.code, error: e.message, kept: this.run.policyVersion });
    }
  }

  /** The spec cannot be used: every waiting group is reported failed so the coordinator re-queues it. */
  private failWaiting(err: GrpoError): void {
    const taken = this.leases.take(Number.POSITIVE_INFINITY);
    const message = `worker ${this.opts.name} cannot use RunSpec ${this.run.runId}: ${err.message}`;
    for (const t of taken) this.report(t, { groupId: t.spec.groupId, code: err.code, message });
    this.opts.log('error', 'groups_refused', { groups: taken.length, code: err.code, error: err.message });
  }

  private async batch(ctx: RolloutContext, taken: TakenGroup[]): Promise<void> {
    const { outcomes, timing } = await rolloutIsolated(this.rollout, ctx, taken.map((t) => t.spec), this.opts.log);
    const perLease = new Map<LeaseEntry, { taken: TakenGroup[]; results: GroupRollout[] }>();
    let failed = 0;
    let dropped = 0;
    outcomes.forEach((o, i) => {
      const t = taken[i];
      if (!this.leases.isLive(t)) dropped += 1;
      else if (isGroupFailure(o)) {
        failed += 1;
        this.report(t, o);
      } else {
        const entry = perLease.get(t.lease) ?? { taken: [], results: [] };
        perLease.set(t.lease, entry);
        entry.taken.push(t);
        entry.results.push(o);
      }
    });
    for (const [lease, { taken: ts, results }] of perLease) {
      this.opts.send({ kind: Kind.Groups, leaseId: lease.leaseId, results });
      for (const t of ts) this.leases.settle(t);
    }
    this.counters.groupsDone += outcomes.length - failed - dropped;
    this.counters.groupsDropped += dropped;
    this.recordCall({ groups: taken.length, ...timing }, { groups: taken.length, failed, dropped }, ctx.policyVersion);
    this.resize(timing.sampleSeconds, taken.length);
  }

  /** Continuous batching (continuous.ts) runs where the native decoder does, unless turned off or the rollout is substituted. */
  private streams(ctx: RolloutContext): boolean {
    let why: string | null = null;
    if (this.opts.continuous === false) why = 'continuous batching off';
    else if (this.opts.rollout !== undefined) why = 'substituted rollout';
    else if (ctx.sampling.maxNewTokens < 1) why = 'max_gen_len 0';
    // a pool's GEMM shapes depend on what shares it, and so do the last bits of the log-probs:
    // deterministic mode samples each group in a call of its own (rollout.ts)
    else if (this.leases.seeded) why = 'deterministic mode';
    else why = nativeDecodeBlocker(ctx.model);
    const path = why === null ? 'native decoder, continuous batching' : `batches (${why})`;
    if (path !== this.samplingPath) {
      this.samplingPath = path;
      this.opts.log('info', 'sampling_path', { path });
    }
    return why === null;
  }

  /**
   * Streams waiting groups through one pool of groupsPerCall x groupSize rows until none wait (or
   * weights, a spec or stop are pending), reporting each group as soon as it is scored. Groups it
   * hands back (sampling threw, or one too large for the pool) go through the batch path.
   */
  private async stream(ctx: RolloutContext): Promise<void> {
    const first = this.leases.take(1);
    const rows = this.groupsPerCall * (first[0]?.spec.groupSize ?? 1);
    let pending: TakenGroup[] = first;
    let failed = 0;
    let dropped = 0;
    const stats = await streamGroups<TakenGroup>(ctx, rows, {
      next: () => {
        if (pending.length > 0) return pending.pop()!;
        if (this.pendingWeights !== null || this.pendingSpec !== null || this.stopRequested) return null;
        return this.leases.take(1)[0] ?? null;
      },
      done: (t, outcome) => {
        if (!this.leases.isLive(t)) {
          this.counters.groupsDropped += 1;
          dropped += 1;
        } else if (isGroupFailure(outcome)) {
          this.report(t, outcome);
          failed += 1;
        } else {
          this.opts.send({ kind: Kind.Groups, leaseId: t.lease.leaseId, results: [outcome] });
          this.leases.settle(t);
          this.counters.groupsDone += 1;
        }
      },
    });
    pending = [];
    // the same event as a batch call (log readers grep for it), marked continuous
    const fields = { mode: 'continuous', groups: stats.groups, failed, dropped, rows: stats.rows };
    this.recordCall(stats, stats.error !== undefined ? { ...fields, error: stats.error } : fields, ctx.policyVersion);
    if (stats.leftover.length > 0) await this.batch(ctx, stats.leftover);
  }

  /** GroupFailed for one taken group (the lease still current); counted and logged. */
  private report(t: TakenGroup, f: { groupId: string; code: string; message: string }): void {
    this.counters.groupsFailed += 1;
    this.opts.send({ kind: Kind.GroupFailed, leaseId: t.lease.leaseId, groupId: f.groupId, code: f.code, message: f.message });
    this.leases.settle(t);
    this.opts.log('warn', 'group_failed', { lease: t.lease.leaseId, group: f.groupId, code: f.code, error: f.message });
  }

  /** Counts one sampling call (a batch or a stream), observes it, and logs its `batch` line: `fields` first. */
  private recordCall(t: RolloutTiming & { groups: number }, fields: Record<string, unknown>, policyVersion: number): void {
    const c = this.counters;
    c.batches += 1;
    c.completions += t.completions;
    c.tokensGenerated += t.tokensGenerated;
    c.sampleSeconds += t.sampleSeconds;
    c.rewardSeconds += t.rewardSeconds;
    this.opts.metrics?.observeBatch({ groups: t.groups, sampleSeconds: t.sampleSeconds, rewardSeconds: t.rewardSeconds });
    this.opts.log('info', 'batch', {
      ...fields,
      completions: t.completions,
      tokens: t.tokensGenerated,
      sample_s: round(t.sampleSeconds),
      reward_s: round(t.rewardSeconds),
      policyVersion,
    });
  }

  /** Keeps one sampling call under the time budget (see the file comment). */
  private resize(sampleSeconds: number, groups: number): void {
    const before = this.groupsPerCall;
    if (sampleSeconds > this.sampleBudgetSeconds && groups > 1) this.groupsPerCall = Math.max(1, Math.floor(groups / 2));
    else if (sampleSeconds < this.sampleBudgetSeconds / 4 && groups >= before) this.groupsPerCall = Math.min(this.opts.capacity, before * 2);
    if (this.groupsPerCall !== before) {
      this.opts.log('info', 'groups_per_call', { from: before, to: this.groupsPerCall, sample_s: round(sampleSeconds), budget_s: this.sampleBudgetSeconds });
    } else if (sampleSeconds > 2 * this.sampleBudgetSeconds) {
      this.opts.log('warn', 'slow_sampling', { groups, sample_s: round(sampleSeconds), budget_s: this.sampleBudgetSeconds, hint: 'lower group_size or max_gen_len, or use a faster backend' });
    }
  }
}

const round = (s: number): number => Math.round(s * 1000) / 1000;
