/**
 * The coordinator's resume epochs (docs/protocol.md, "Resume epochs"). Every learner process of a
 * run gets an epoch above every epoch seen so far, so a learner resumed from an older checkpoint
 * publishes its (lower) versions in a higher epoch and workers accept them, while a replayed or
 * stale upload, whose (epoch, version) is not above what a worker holds, is refused by the worker.
 *
 *   - a learner Hello with `newEpoch` (a start or restart) gets max(current, its claim, the highest
 *     epoch a worker holds) + 1;
 *   - a learner Hello without it (a reconnect) keeps its epoch, unless a newer one is known: then
 *     it is a stale session of the run (a newer learner process started) and is refused (4007);
 *   - a worker Hello whose weights are of an epoch above the current one (the coordinator
 *     restarted, and the learner's checkpoint knew an older epoch) makes the connected learner
 *     reconnect for a new epoch (close 4008).
 * Only the learner's uploads of the current epoch are kept and fanned out.
 */
export type LearnerEpoch = { ok: true; epoch: number; fresh: boolean } | { ok: false; why: string };

export class Epochs {
  /** The current epoch: the connected (or last) learner's; null before any learner joined. */
  current: number | null = null;
  /** The highest epoch any worker said it holds weights of. */
  private workersMax = -1;

  /** Decides a learner Hello (see the file comment) without changing anything; adopt() an admitted one. */
  learner(hello: { epoch?: number; newEpoch?: boolean }): LearnerEpoch {
    const known = Math.max(this.current ?? -1, this.workersMax);
    if (hello.newEpoch === true) return { ok: true, epoch: Math.max(known, hello.epoch ?? -1) + 1, fresh: true };
    const mine = hello.epoch ?? 0;
    if (mine < known) {
      return { ok: false, why: `a newer learner process of this run started (epoch ${known}); this session runs in epoch ${mine} and is stale` };
    }
    return { ok: true, epoch: mine, fresh: false };
  }

  /** The admitted learner's epoch becomes the current one. */
  adopt(epoch: number): void {
    this.current = epoch;
  }

  /** Records a worker's epoch; true when it is above the current epoch (the learner must get a new one). */
  worker(epoch: number | undefined): boolean {
    const e = epoch ?? 0;
    this.workersMax = Math.max(this.workersMax, e);
    return this.current !== null && e > this.current;
  }
}
