/**
 * Weights at the coordinator: the learner's upload is verified and kept as ready-to-send frames
 * (only the newest complete version), and fanned out to every worker beside the upload.
 *
 * Fan-out, per worker: send Begin, the chunks, End of the newest version, one frame at a time,
 * while the socket's bufferedAmount stays under the high-water mark; above it, wait for the
 * write callback of a frame already sent. Before every frame, if a newer version has completed
 * meanwhile, abandon the old transfer there (a chunk boundary) and start the newest with its
 * Begin. A slow worker so never has more than about one high-water mark of frames queued, and
 * they are of the newest version it could be sent.
 *
 * LoRA (protocol.ts AdapterInfo): a LoRA base payload (base weights + adapters) is kept beside the
 * newest version; a worker that does not hold that base is sent it first, then the newest adapter
 * payload, so a worker joining late still gets the base once and every later version is the
 * adapters alone.
 */
import { encodeMessage } from '../shared/codec.js';
import { compareStamps, type Stamp } from '../shared/epoch.js';
import { GrpoError } from '../shared/errors.js';
import { Kind } from '../shared/protocol.js';
import type { ProtocolLogger, WeightsMsg } from '../shared/protocol.js';
import { WeightsAssembler } from '../shared/weights-wire.js';

export interface StoredVersion {
  version: number;
  epoch: number; // the resume epoch it was published in (0 when its Begin had none)
  totalBytes: number;
  frames: Uint8Array[]; // Begin, chunk 0..n-1, End: encoded, sent as they are to every worker
  adapterBase: number | null; // LoRA: the base version it applies to (its own for a base); null = full payload
}

export interface WeightsStats {
  version: number | null; // newest complete version
  bytes: number; // its payload size
  versionsReceived: number;
  uploadErrors: number; // layout, sequence and checksum failures of learner uploads
  transfersStarted: number;
  transfersCompleted: number;
  transfersAbandoned: number; // switched to a newer version part-way
  framesSent: number;
  bytesSent: number;
}

/** The learner's uploads: assembled (verify only) and kept as frames. */
export class WeightsStore {
  private readonly assembler: WeightsAssembler;
  private uploading: Uint8Array[] = [];
  latest: StoredVersion | null = null;
  base: StoredVersion | null = null; // the LoRA base that adapter payloads apply to, when the run uses LoRA
  versionsReceived = 0;
  uploadErrors = 0;

  constructor(maxTotalBytes: number) {
    this.assembler = new WeightsAssembler({ maxTotalBytes, keepPayload: false });
  }

  /**
   * One upload message with its raw frame. Returns the version when it completed and is newer
   * than the one kept. Throws the assembler's coded errors (the upload of that version is dropped).
   */
  accept(msg: WeightsMsg, raw: Uint8Array): StoredVersion | null {
    try {
      if (msg.kind === Kind.WeightsBegin) this.uploading = [];
      const done = this.assembler.push(msg);
      if (msg.kind !== Kind.WeightsEnd) {
        if (this.assembler.inProgress === msg.version) this.uploading.push(msg.kind === Kind.WeightsBegin ? encodeMessage(msg) : raw);
        return null;
      }
      if (done === null) return null;
      const frames = [...this.uploading, encodeMessage(msg)];
      this.uploading = [];
      this.versionsReceived += 1;
      const epoch = done.begin.epoch ?? 0;
      if (this.latest !== null && compareStamps({ epoch, version: done.begin.version }, this.latest) <= 0) return null;
      const adapter = done.begin.adapter;
      const stored: StoredVersion = { version: done.begin.version, epoch, totalBytes: done.begin.totalBytes, frames, adapterBase: adapter?.base ?? null };
      if (adapter !== undefined && adapter.base !== stored.version) {
        if (this.base === null || this.base.version !== adapter.base || this.base.epoch !== epoch) {
          throw new GrpoError(
            'GRPO_ERR_ADAPTER_MISMATCH',
            `adapter payload v${stored.version} applies to LoRA base v${adapter.base}, but this coordinator holds ${this.base === null ? 'no base' : `base v${this.base.version}`}; the learner must send its base first`,
          );
        }
      } else {
        this.base = adapter !== undefined ? stored : null; // a full payload ends the LoRA chain
      }
      this.latest = stored;
      return this.latest;
    } catch (err) {
      this.uploading = [];
      this.uploadErrors += 1;
      throw err;
    }
  }

  /** A new resume epoch began: weights of earlier epochs are never sent again. */
  clear(): void {
    this.latest = null;
    this.base = null;
  }

  /** What a worker holding the LoRA base `haveBase` must be sent next to reach the newest version. */
  next(haveBase: Stamp | null): StoredVersion | null {
    const latest = this.latest;
    if (latest === null) return null;
    if (latest.adapterBase === null || latest.adapterBase === latest.version || (haveBase !== null && haveBase.epoch === latest.epoch && haveBase.version === latest.adapterBase)) return latest;
    return this.base !== null && this.base.version === latest.adapterBase ? this.base : null;
  }
}

/** What the fan-out needs of a worker connection. */
export interface FanoutTarget {
  readonly sessionId: string;
  readonly open: boolean;
  readonly bufferedAmount: number;
  sendFrame(frame: Uint8Array, cb: (err?: Error | null) => void): void;
}

interface Transfer {
  target: FanoutTarget;
  have: Stamp | null; // (epoch, version) the worker holds completely
  haveBase: Stamp | null; // LoRA base it holds (sent in this session)
  sending: StoredVersion | null;
  next: number; // index into sending.frames
  waiting: boolean; // paused above the high-water mark until a write callback
  inFlight: number; // frames handed to the socket whose write callback has not run
  startedAt: number; // performance.now() at the Begin frame of `sending`, ms
}

const POLL_MS = 10; // re-check bufferedAmount when other traffic filled the socket

export class Fanout {
  private readonly transfers = new Map<string, Transfer>();
  readonly stats = { transfersStarted: 0, transfersCompleted: 0, transfersAbandoned: 0, framesSent: 0, bytesSent: 0 };

  /** `onSent(seconds)`: one version reached one worker's socket, Begin handed over to End written. */
  constructor(
    private readonly store: WeightsStore,
    private readonly highWaterMarkBytes: number,
    private readonly log: ProtocolLogger,
    private readonly onSent: (seconds: number) => void = () => {},
  ) {}

  /** Starts serving a worker; `have` is the (epoch, version) it already holds (from its Hello). */
  attach(target: FanoutTarget, have: Stamp | null): void {
    // A reconnected worker holds the kept LoRA base when it holds a version of the same epoch at or
    // above it (every later version of that epoch is an adapter payload for it); else send it again.
    const base = this.store.base;
    const haveBase = have !== null && base !== null && have.epoch === base.epoch && have.version >= base.version ? { epoch: base.epoch, version: base.version } : null;
    this.transfers.set(target.sessionId, { target, have, haveBase, sending: null, next: 0, waiting: false, inFlight: 0, startedAt: 0 });
    this.pump(target.sessionId);
  }

  detach(sessionId: string): void {
    this.transfers.delete(sessionId);
  }

  /** A new version completed: every idle or mid-transfer worker moves to it. */
  kick(): void {
    for (const id of this.transfers.keys()) this.pump(id);
  }

  /** Versions each worker holds completely (for stats and tests). */
  held(): Map<string, number | null> {
    return new Map([...this.transfers].map(([id, t]) => [id, t.have?.version ?? null]));
  }

  private pump(sessionId: string): void {
    const t = this.transfers.get(sessionId);
    if (t === undefined || t.waiting) return;
    for (;;) {
      const latest = this.store.next(t.haveBase);
      if (!t.target.open || latest === null) return;
      if (t.sending === null || compareStamps(t.sending, latest) !== 0) {
        if (t.sending !== null) this.stats.transfersAbandoned += 1;
        else if (t.have !== null && compareStamps(t.have, latest) >= 0) return; // held, or older than held: the worker would refuse it
        t.sending = latest;
        t.next = 0;
        t.startedAt = performance.now();
        this.stats.transfersStarted += 1;
      }
      if (t.target.bufferedAmount >= this.highWaterMarkBytes) {
        t.waiting = true; // resumed by the write callback of a frame already queued
        if (t.inFlight === 0) setTimeout(() => this.written(sessionId), POLL_MS).unref(); // none of ours is queued
        return;
      }
      const sending = t.sending;
      const frame = sending.frames[t.next++];
      this.stats.framesSent += 1;
      this.stats.bytesSent += frame.byteLength;
      const last = t.next === sending.frames.length;
      const startedAt = t.startedAt;
      if (last) {
        t.have = { epoch: sending.epoch, version: sending.version };
        if (sending.adapterBase === sending.version) t.haveBase = t.have;
        else if (sending.adapterBase === null) t.haveBase = null;
        t.sending = null;
        this.stats.transfersCompleted += 1;
        this.log('debug', 'weights_sent', { session: sessionId, version: sending.version });
      }
      t.inFlight += 1;
      t.target.sendFrame(frame, (err) => {
        t.inFlight -= 1;
        if (last && !err) this.onSent((performance.now() - startedAt) / 1000);
        this.written(sessionId, err);
      });
    }
  }

  private written(sessionId: string, err?: Error | null): void {
    const t = this.transfers.get(sessionId);
    if (t === undefined) return;
    if (err) {
      this.transfers.delete(sessionId); // the connection is going away; its close handler cleans up
      return;
    }
    if (t.waiting) {
      t.waiting = false;
      this.pump(sessionId);
    }
  }
}

export function weightsStats(store: WeightsStore, fanout: Fanout): WeightsStats {
  return {
    version: store.latest?.version ?? null,
    bytes: store.latest?.totalBytes ?? 0,
    versionsReceived: store.versionsReceived,
    uploadErrors: store.uploadErrors,
    ...fanout.stats,
  };
}
