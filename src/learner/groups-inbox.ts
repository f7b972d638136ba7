/**
 * The learner's side of work accounting (docs/protocol.md sections 5-6): which prompt groups are
 * out with the workers, what became of every result, and the buffer of admitted groups waiting
 * for the next step. No networking and no tensors: messages go out through `send`, results come
 * in through onResult/onExhausted, and the training loop takes batches with waitFor/take/trained.
 *
 *   in flight = outstanding (enqueued, no result yet) + buffered (admitted, not trained)
 *               + training (the batch of the step being computed)
 *
 * fill() keeps `prompts_per_step * (max_staleness + 1)` groups in flight, so while one step trains
 * the workers sample up to max_staleness steps ahead and no further: with max_staleness 0 nothing
 * is sampled during a step (fully on-policy), with 1 the next step's groups are.
 *
 * Every GroupResult and GroupExhausted gets a Verdict at once, and a repeat (the coordinator
 * redelivers what a dropped connection left unjudged) gets the same Verdict again:
 *   - ok        admitted into the buffer. Staleness is judged against the version the group will
 *               be TRAINED at, not the version now: groups are trained first in, first out,
 *               `prompts_per_step` at a time, so a group arriving behind k full batches, or during
 *               a step, is trained k (+1) versions later. Admitted only when that version minus
 *               the group's policyVersion is <= max_staleness (a version from the future, i.e. not
 *               of this learner's lineage, is stale too), and its resume epoch is this learner's
 *               (docs/protocol.md, "Resume epochs": weights of another epoch are of another
 *               learner process, whose versions are not this one's, however close the numbers);
 *   - stale     its prompt is re-queued in the data cursor and handed out again under a new
 *               group id by the next fill();
 *   - failed    GroupExhausted (the coordinator gave up on it) or a refused result (malformed, or
 *               not the run's: group-check.ts): its prompt is SKIPPED (marked consumed in the
 *               cursor, never trained), logged and counted, so a prompt that breaks every worker
 *               cannot loop forever. A refusal's Verdict carries its code and message, which the
 *               coordinator forwards to the worker that sent the result;
 *   - a group id this process never enqueued (a result of an earlier learner process, held by the
 *               coordinator across the restart) is answered 'stale' and counted `unknown`; its
 *               prompt is in the restored cursor's pending list and goes out again anyway.
 * Group ids are `<tag>.p<promptIndex>.a<attempt>`; the tag is unique per learner process.
 */
import type { DataCursor } from './data-cursor.js';
import { GrpoError, isGrpoError } from '../shared/errors.js';
import { Kind, VERDICT_MESSAGE_CHARS } from '../shared/protocol.js';
import type {
  GroupExhaustedMsg,
  GroupResultMsg,
  GroupRollout,
  GroupSpec,
  Message,
  ProtocolLogger,
  VerdictReason,
} from '../shared/protocol.js';

/** Verdicts remembered for answering repeats; older ones are forgotten first. */
export const JUDGED_MEMORY = 65_536;

export interface InboxOptions {
  tag: string; // group id prefix, unique per learner process
  groupSize: number; // config group_size
  promptsPerStep: number; // config prompts_per_step
  maxStaleness: number; // config max_staleness
  cursor: DataCursor;
  /**
   * The train prompt at a dataset position (task.example('train', index)); with a curriculum
   * also its level and task options, copied into the GroupSpec for the workers.
   */
  example: (promptIndex: number) => { prompt: string; meta: unknown; level?: number; taskOptions?: Record<string, unknown> };
  send: (msg: Message) => boolean; // false while disconnected: resync() re-sends on the next Welcome
  /**
   * Throws a coded error (GRPO_ERR_BAD_ROLLOUT, GRPO_ERR_REWARD_NAMES, GRPO_ERR_PROMPT_TOKENS, ...)
   * for a group the learner refuses; `spec` is what it leased.
   */
  validate?: (group: GroupRollout, spec: GroupSpec) => void;
  /** A result was refused with `code` (counted in Prometheus by the caller). */
  onRefused?: (code: string) => void;
  log: ProtocolLogger;
  policyVersion: number; // version of the learner's weights now
  /** The resume epoch the learner runs in (its last Welcome's); a group of another epoch is stale. Default 0. */
  epoch?: () => number;
  counts?: InboxCounts; // counters carried over from the checkpoint of a resumed run
  /**
   * Failed groups in a row (none admitted between them) after which the run cannot make
   * progress (a reward that always throws, hangs or returns NaN): `onStuck` gets
   * GRPO_ERR_GROUPS_FAILING once. 0 = never give up.
   */
  maxFailedInRow?: number;
  onStuck?: (err: GrpoError) => void;
  /** Deterministic mode: the sampling seed of a prompt's group (GroupSpec.seed); none otherwise. */
  seedOf?: (promptIndex: number) => number;
}

interface Judgement {
  reason: VerdictReason;
  why?: { code: string; message: string }; // a refused result's coded reason
}

export interface AdmittedGroup {
  spec: GroupSpec;
  rollout: GroupRollout;
  attempts: number; // leases before the one that finished it (from the coordinator)
  worker: string;
}

export interface InboxCounts {
  enqueued: number; // group ids sent in Enqueue (re-sends after a reconnect not counted)
  admitted: number; // Verdict ok
  trained: number; // admitted groups a step has trained on
  droppedStale: number; // Verdict stale for this process's groups (prompt re-queued)
  failed: number; // Verdict failed: exhausted at the coordinator or refused (prompt skipped)
  refused: number; // results refused (a subset of failed): malformed or not the run's, the worker told why
  duplicates: number; // repeated results answered with their earlier Verdict
  unknown: number; // results for group ids this process never enqueued (answered stale)
}

export const EMPTY_COUNTS: Readonly<InboxCounts> = Object.freeze({
  enqueued: 0,
  admitted: 0,
  trained: 0,
  droppedStale: 0,
  failed: 0,
  refused: 0,
  duplicates: 0,
  unknown: 0,
});

export class GroupsInbox {
  private readonly outstanding = new Map<string, GroupSpec>(); // enqueued, no result yet
  private buffer: AdmittedGroup[] = []; // admitted, not trained; FIFO
  private readonly judged = new Map<string, Judgement>(); // a refusal keeps its code for repeats
  private readonly attempts = new Map<number, number>(); // promptIndex -> group ids made for it
  private training = 0; // groups in the step being computed
  private version: number;
  private readonly counters: InboxCounts;
  private waiter: { n: number; resolve: () => void } | null = null;
  private closed = false;
  private failedInRow = 0;
  private lastFailure = '';

  constructor(private readonly o: InboxOptions) {
    if (!Number.isInteger(o.promptsPerStep) || o.promptsPerStep < 1) {
      throw new GrpoError('GRPO_ERR_BAD_OPTION', `prompts_per_step is ${o.promptsPerStep}; it must be an integer >= 1`);
    }
    this.version = o.policyVersion;
    this.counters = { ...EMPTY_COUNTS, ...o.counts };
  }

  get counts(): Readonly<InboxCounts> {
    return { ...this.counters };
  }

  /** Groups admitted and waiting for a step. */
  get buffered(): number {
    return this.buffer.length;
  }

  /** Groups enqueued and waiting for a result. */
  get pending(): number {
    return this.outstanding.size;
  }

  /** How many groups fill() keeps in flight. */
  get target(): number {
    return this.o.promptsPerStep * (this.o.maxStaleness + 1);
  }

  /** The learner's weights are now at `version` (after a step). */
  setVersion(version: number): void {
    this.version = version;
  }

  /** Hands out prompts until `target` groups are in flight, and enqueues them. */
  fill(): void {
    if (this.closed) return;
    const missing = this.target - (this.outstanding.size + this.buffer.length + this.training);
    if (missing <= 0) return;
    const specs = this.o.cursor.next(missing).map((p) => this.makeSpec(p));
    for (const s of specs) this.outstanding.set(s.groupId, s);
    this.counters.enqueued += specs.length;
    this.o.send({ kind: Kind.Enqueue, groups: specs });
  }

  /** After every Welcome: re-sends Enqueue for every group still waiting (ids it knows are ignored). */
  resync(): void {
    if (this.outstanding.size > 0) this.o.send({ kind: Kind.Enqueue, groups: [...this.outstanding.values()] });
  }

  /**
   * The run stops training: later results get no Verdict, so the coordinator keeps them for the
   * next learner (which answers them as unknown), and the counters stay those of the checkpoint.
   */
  close(): void {
    this.closed = true;
  }

  onResult(msg: GroupResultMsg): void {
    if (this.closed) return;
    const g = msg.group;
    const id = g.groupId;
    const earlier = this.judged.get(id);
    if (earlier !== undefined) {
      this.counters.duplicates += 1;
      this.verdict(id, earlier.reason, earlier.why);
      return;
    }
    const spec = this.outstanding.get(id);
    if (spec === undefined) {
      this.counters.unknown += 1;
      this.o.log('info', 'group_unknown', { group: id, worker: msg.workerName });
      this.judge(id, 'stale');
      return;
    }
    this.outstanding.delete(id);
    try {
      this.o.validate?.(g, spec);
    } catch (err) {
      if (!isGrpoError(err)) throw err;
      this.counters.refused += 1;
      this.o.onRefused?.(err.code);
      const why = { code: err.code, message: err.message.slice(0, VERDICT_MESSAGE_CHARS) };
      this.skip(spec, 'group_refused', { code: err.code, error: err.message, worker: msg.workerName, session: msg.sessionId }, why);
      return;
    }
    const trainVersion = this.version + (this.training > 0 ? 1 : 0) + Math.floor(this.buffer.length / this.o.promptsPerStep);
    const staleness = trainVersion - g.policyVersion;
    const epoch = this.o.epoch?.() ?? 0;
    if (staleness > this.o.maxStaleness || staleness < 0 || (g.epoch ?? 0) !== epoch) {
      this.counters.droppedStale += 1;
      this.o.cursor.requeue(spec.promptIndex);
      const epochs = (g.epoch ?? 0) !== epoch ? { sampledEpoch: g.epoch ?? 0, epoch } : {};
      this.o.log('info', 'group_stale', { group: id, prompt: spec.promptIndex, sampledAt: g.policyVersion, trainAt: trainVersion, maxStaleness: this.o.maxStaleness, ...epochs });
      this.judge(id, 'stale');
      this.fill();
      return;
    }
    this.counters.admitted += 1;
    this.failedInRow = 0;
    this.buffer.push({ spec, rollout: g, attempts: msg.attempts, worker: msg.workerName });
    this.judge(id, 'ok');
    this.wake();
  }

  onExhausted(msg: GroupExhaustedMsg): void {
    if (this.closed) return;
    const earlier = this.judged.get(msg.groupId);
    if (earlier !== undefined) {
      this.counters.duplicates += 1;
      this.verdict(msg.groupId, earlier.reason, earlier.why);
      return;
    }
    const spec = this.outstanding.get(msg.groupId);
    if (spec === undefined) {
      this.counters.unknown += 1;
      this.judge(msg.groupId, 'failed');
      return;
    }
    this.outstanding.delete(msg.groupId);
    this.skip(spec, 'group_exhausted', { code: msg.code, error: msg.message, failures: msg.failures, redispatches: msg.redispatches });
  }

  /**
   * Resolves once `n` groups are buffered, or when `signal` aborts (check it after). Only one
   * wait at a time.
   */
  waitFor(n: number, signal?: AbortSignal): Promise<void> {
    if (this.buffer.length >= n || signal?.aborted) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        signal?.removeEventListener('abort', done);
        this.waiter = null;
        resolve();
      };
      this.waiter = { n, resolve: done };
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  /** Takes the `n` oldest buffered groups for a step; call trained() when the step is done. */
  take(n: number): AdmittedGroup[] {
    if (this.training > 0) throw new GrpoError('GRPO_ERR_INTERNAL', 'a batch is already being trained; call trained() first');
    if (this.buffer.length < n) throw new GrpoError('GRPO_ERR_INTERNAL', `take(${n}) with ${this.buffer.length} groups buffered`);
    const batch = this.buffer.slice(0, n);
    this.buffer = this.buffer.slice(n);
    this.training = batch.length;
    return batch;
  }

  /** The step on `batch` finished: its prompts are consumed. */
  trained(batch: readonly AdmittedGroup[]): void {
    for (const g of batch) {
      this.o.cursor.admit(g.spec.promptIndex);
      this.attempts.delete(g.spec.promptIndex);
    }
    this.counters.trained += batch.length;
    this.training = 0;
  }

  private makeSpec(promptIndex: number): GroupSpec {
    const attempt = this.attempts.get(promptIndex) ?? 0;
    this.attempts.set(promptIndex, attempt + 1);
    const ex = this.o.example(promptIndex);
    return {
      groupId: `${this.o.tag}.p${promptIndex}.a${attempt}`,
      promptIndex,
      prompt: ex.prompt,
      meta: ex.meta,
      groupSize: this.o.groupSize,
      ...(ex.level !== undefined ? { level: ex.level } : {}),
      ...(ex.taskOptions !== undefined ? { taskOptions: ex.taskOptions } : {}),
      ...(this.o.seedOf !== undefined ? { seed: this.o.seedOf(promptIndex) } : {}),
    };
  }

  /** Verdict failed; the prompt is consumed without training (see the file comment). */
  private skip(spec: GroupSpec, event: string, fields: Record<string, unknown>, why?: { code: string; message: string }): void {
    this.counters.failed += 1;
    this.o.cursor.admit(spec.promptIndex);
    this.attempts.delete(spec.promptIndex);
    this.o.log('warn', event, { group: spec.groupId, prompt: spec.promptIndex, ...fields });
    this.judge(spec.groupId, 'failed', why);
    this.failedInRow += 1;
    this.lastFailure = `${fields.code ?? event}: ${fields.error ?? ''}`;
    const limit = this.o.maxFailedInRow ?? 0;
    if (limit > 0 && this.failedInRow === limit) {
      this.o.onStuck?.(
        new GrpoError(
          'GRPO_ERR_GROUPS_FAILING',
          `the last ${limit} groups all failed and none was admitted (last: ${this.lastFailure}); ` +
            'fix the reward function or task (see the group_exhausted warnings), or raise max_failed_groups_in_row',
        ),
      );
      return; // no more prompts: the run stops and checkpoints with these prompts counted as failed
    }
    this.fill();
  }

  private judge(groupId: string, reason: VerdictReason, why?: { code: string; message: string }): void {
    this.judged.set(groupId, why === undefined ? { reason } : { reason, why });
    if (this.judged.size > JUDGED_MEMORY) this.judged.delete(this.judged.keys().next().value as string);
    this.verdict(groupId, reason, why);
  }

  /**
   * A repeat carries the refusal's code again: the first Verdict may have been lost with the
   * connection, and the coordinator forwards only the Verdict that finishes the group.
   */
  private verdict(groupId: string, reason: VerdictReason, why?: { code: string; message: string }): void {
    this.o.send({ kind: Kind.Verdict, groupId, admitted: reason === 'ok', reason, ...why });
  }

  private wake(): void {
    if (this.waiter !== null && this.buffer.length >= this.waiter.n) this.waiter.resolve();
  }
}
