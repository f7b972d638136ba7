/**
 * Per-peer rate limit of warning logs. A peer that sends garbage as fast as it can must not make
 * the coordinator write as fast as it can: each connection may log a burst of `burst` lines, then
 * one per `1 / perSecond` s; the lines in between are counted, and the next line that is logged
 * carries `suppressed: n`.
 */
import type { ProtocolLogger } from '../shared/protocol.js';

export class LogLimit {
  private tokens: number;
  private last: number;
  private suppressed = 0;

  constructor(
    private readonly burst = 8,
    private readonly perSecond = 1,
    now = Date.now(),
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Lines suppressed so far (or null: suppress this one too). */
  take(now = Date.now()): number | null {
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.perSecond);
    this.last = now;
    if (this.tokens < 1) {
      this.suppressed += 1;
      return null;
    }
    this.tokens -= 1;
    const n = this.suppressed;
    this.suppressed = 0;
    return n;
  }
}

/** Logs through `limit`: dropped when over the rate, else with the count of lines dropped before it. */
export function limitedLog(log: ProtocolLogger, limit: LogLimit, level: 'info' | 'warn' | 'error', event: string, fields: Record<string, unknown>): void {
  const suppressed = limit.take();
  if (suppressed === null) return;
  log(level, event, suppressed > 0 ? { ...fields, suppressed } : fields);
}
