/**
 * Which call of a reward task is running, and since when: shared memory between RewardPool (the
 * sampling thread) and its reward threads, in place of a message per call. A thread writes the
 * slot as each call starts; the pool's kill timer reads it when it fires and either aborts the
 * task (the running call is over its limit: a synchronous hang) or sleeps until that call's limit.
 *
 * One BigInt64 slot: (Date.now() at the call's start) * 2^20 + (call index + 1), 0 before the
 * first call starts, so start and index are read together in one atomic load. Date.now() is the
 * one clock both threads share (performance.now() has a per-thread origin).
 */

const INDEX_BITS = 20n;
const INDEX_MASK = (1n << INDEX_BITS) - 1n;
/** Calls one task may hold (the index field's range). */
export const MAX_TASK_CALLS = Number(INDEX_MASK) - 1;

/** A fresh slot, passed to the thread inside the task (SharedArrayBuffers are shared, not copied). */
export function newProgress(): BigInt64Array {
  return new BigInt64Array(new SharedArrayBuffer(8));
}

/** Thread side: call `index` of the task starts now. */
export function markStarted(slot: BigInt64Array, index: number): void {
  Atomics.store(slot, 0, (BigInt(Date.now()) << INDEX_BITS) | BigInt(index + 1));
}

/** Pool side: the running call's index and start (ms since the epoch), or null before the first starts. */
export function readProgress(slot: BigInt64Array): { index: number; startedMs: number } | null {
  const v = Atomics.load(slot, 0);
  if (v === 0n) return null;
  return { index: Number(v & INDEX_MASK) - 1, startedMs: Number(v >> INDEX_BITS) };
}
