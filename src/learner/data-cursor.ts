/**
 * The learner's dataset order. Prompt positions 0, 1, 2, ... are handed out in order; each one is
 * in exactly one of these states:
 *
 *   new        >= next: never handed out
 *   in flight  handed out (a group is being sampled), not admitted
 *   queued     re-queued (its group was stale or failed, or it was in flight at a checkpoint):
 *              handed out again before any new position, first re-queued first
 *   admitted   its group was trained; never handed out again
 *
 * A checkpoint's state holds `next` and the positions that are not admitted (queued, then in
 * flight, then any the caller says are admitted but not yet trained). Restoring queues all of
 * them, so a resumed run hands them out again first and continues at `next`: it neither skips a
 * prompt nor trains one twice. (The known bug this avoids: a trainer that saved "the lowest
 * position not yet trained" as its resume point let groups dropped as stale pin that point, so on
 * resume everything after it, already trained, was trained again.)
 *
 * Positions grow without bound; a caller with a finite dataset maps position p to example
 * p mod size (epochs).
 */
import { GrpoError } from '../shared/errors.js';

/** What trainer_state.json stores as `dataCursor`. */
export interface DataCursorState {
  version: 1;
  next: number; // first position never handed out
  pending: number[]; // not admitted, below next: handed out again first after restore, in this order
}

export interface DataCursorCounts {
  next: number;
  inFlight: number;
  queued: number;
  admitted: number; // positions below next that are admitted
  requeued: number; // requeue() calls since construction or restore
}

function cursorError(msg: string): GrpoError {
  return new GrpoError('GRPO_ERR_DATA_CURSOR', msg);
}

export class DataCursor {
  private nextPos = 0;
  private queue: number[] = []; // FIFO of queued positions
  private queued = new Set<number>();
  private flying = new Set<number>(); // insertion order = hand-out order
  private requeues = 0;

  constructor(state?: DataCursorState) {
    if (state !== undefined) this.restore(state);
  }

  /** A cursor from trainer_state.json's `dataCursor` (validated). */
  static fromState(state: unknown): DataCursor {
    const c = new DataCursor();
    c.restore(state);
    return c;
  }

  /** Hands out `n` positions: queued ones first (oldest first), then new ones in order. */
  next(n: number): number[] {
    if (!Number.isInteger(n) || n < 0) throw cursorError(`asked for ${n} prompts; ask for an integer >= 0`);
    const out: number[] = [];
    while (out.length < n && this.queue.length > 0) {
      const p = this.queue.shift()!;
      this.queued.delete(p);
      out.push(p);
    }
    while (out.length < n) out.push(this.nextPos++);
    for (const p of out) this.flying.add(p);
    return out;
  }

  /** Marks an in-flight position admitted (its group is trained). Throws for any other state. */
  admit(position: number): void {
    if (!this.flying.delete(position)) {
      throw cursorError(`cannot admit prompt ${position}: it is ${this.describe(position)}, not in flight`);
    }
  }

  /** Puts an in-flight position back in the queue (stale or failed group): it goes out again first. */
  requeue(position: number): void {
    if (!this.flying.delete(position)) {
      throw cursorError(`cannot re-queue prompt ${position}: it is ${this.describe(position)}, not in flight`);
    }
    this.queue.push(position);
    this.queued.add(position);
    this.requeues += 1;
  }

  isInFlight(position: number): boolean {
    return this.flying.has(position);
  }

  get counts(): DataCursorCounts {
    const inFlight = this.flying.size;
    const queued = this.queue.length;
    return { next: this.nextPos, inFlight, queued, admitted: this.nextPos - inFlight - queued, requeued: this.requeues };
  }

  /**
   * The state to checkpoint. `untrained`: admitted positions whose groups the checkpointed weights
   * have not learned from yet (e.g. buffered for the next step); they are stored as pending too.
   */
  state(opts: { untrained?: Iterable<number> } = {}): DataCursorState {
    const pending = [...this.queue, ...this.flying];
    const seen = new Set(pending);
    for (const p of opts.untrained ?? []) {
      if (seen.has(p)) continue;
      if (!this.isAdmitted(p)) throw cursorError(`untrained prompt ${p} is ${this.describe(p)}, not admitted`);
      seen.add(p);
      pending.push(p);
    }
    return { version: 1, next: this.nextPos, pending };
  }

  /** Replaces this cursor's state with a checkpointed one: every pending position is queued. */
  restore(state: unknown): void {
    const s = validateState(state);
    this.nextPos = s.next;
    this.queue = [...s.pending];
    this.queued = new Set(s.pending);
    this.flying = new Set();
    this.requeues = 0;
  }

  private isAdmitted(p: number): boolean {
    return Number.isInteger(p) && p >= 0 && p < this.nextPos && !this.flying.has(p) && !this.queued.has(p);
  }

  private describe(p: number): string {
    if (!Number.isInteger(p) || p < 0) return 'not a position (an integer >= 0)';
    if (p >= this.nextPos) return 'never handed out';
    if (this.flying.has(p)) return 'in flight';
    if (this.queued.has(p)) return 'queued to be handed out again';
    return 'already admitted';
  }
}

function validateState(state: unknown): DataCursorState {
  const bad = (msg: string): never => {
    throw cursorError(`data cursor state: ${msg}; use the dataCursor written by the learner's checkpoint`);
  };
  if (state === null || typeof state !== 'object' || Array.isArray(state)) bad('not an object');
  const s = state as Record<string, unknown>;
  if (s.version !== 1) bad(`version is ${JSON.stringify(s.version)}, expected 1`);
  const next = s.next;
  if (!Number.isSafeInteger(next) || (next as number) < 0) bad(`next is ${JSON.stringify(next)}, expected an integer >= 0`);
  if (!Array.isArray(s.pending)) bad('pending is not an array');
  const pending = s.pending as unknown[];
  const seen = new Set<number>();
  for (const p of pending) {
    if (!Number.isSafeInteger(p) || (p as number) < 0 || (p as number) >= (next as number)) {
      bad(`pending holds ${JSON.stringify(p)}, expected integers in [0, ${next})`);
    }
    if (seen.has(p as number)) bad(`pending holds ${p} twice`);
    seen.add(p as number);
  }
  return { version: 1, next: next as number, pending: pending as number[] };
}
