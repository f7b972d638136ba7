/**
 * Resume epochs (docs/protocol.md, "Resume epochs"). A weights version is named by the pair
 * (epoch, version): the coordinator gives every learner process of a run a new epoch, above every
 * epoch it or any worker has seen, so a learner that resumed from an older checkpoint publishes
 * lower versions in a higher epoch. A worker loads weights only when their pair is
 * lexicographically above the one it holds; anything else (a replay, a stale learner's upload) is
 * refused and it keeps sampling with what it has. An absent epoch on the wire is 0.
 */
import { GrpoError } from './errors.js';
import { WireError } from './protocol.js';

export interface Stamp {
  epoch: number;
  version: number;
}

export function stampOf(version: number, epoch: number | undefined | null): Stamp {
  return { epoch: epoch ?? 0, version };
}

/** Negative when a < b, 0 when equal, positive when a > b: epoch first, then version. */
export function compareStamps(a: Stamp, b: Stamp): number {
  return a.epoch !== b.epoch ? a.epoch - b.epoch : a.version - b.version;
}

/** `v12` in epoch 0, `e3/v12` otherwise: how logs and error messages name a version. */
export function describeStamp(s: Stamp): string {
  return s.epoch === 0 ? `v${s.version}` : `e${s.epoch}/v${s.version}`;
}

/** The wire form of an epoch: left out when 0, so runs that never restart look as before. */
export function epochField(epoch: number | null | undefined): { epoch?: number } {
  return epoch ? { epoch } : {};
}

/**
 * A worker's side of the rule: the (epoch, version) it holds. offer() says whether arriving
 * weights load ('new', now held), are the same pair again ('repeat', e.g. a resend after a
 * reconnect: ignored), or are refused with GRPO_ERR_WEIGHTS_BACKWARDS (the worker keeps its own).
 */
export class HeldWeights {
  private held: Stamp | null = null;

  get stamp(): Stamp | null {
    return this.held;
  }

  offer(got: Stamp): 'new' | 'repeat' | GrpoError {
    const held = this.held;
    const order = held === null ? 1 : compareStamps(got, held);
    if (order > 0) {
      this.held = got;
      return 'new';
    }
    if (order === 0) return 'repeat';
    const mine = describeStamp(held as Stamp);
    return new GrpoError(WireError.WeightsBackwards, `weights ${describeStamp(got)} are older than the ${mine} this worker holds (epoch, then version); refused, sampling continues with ${mine}`);
  }
}
