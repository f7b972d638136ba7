/**
 * The learner's weights upload inside ProtocolClient: frames go out one at a time while the
 * socket's bufferedAmount stays under the high-water mark, so the learner's memory never holds
 * more than one encoded copy plus about one high-water mark of frames. A newer publish
 * supersedes an upload in progress at a frame boundary (the coordinator drops the partial
 * version when it sees the newer Begin). A connection lost mid-upload restarts the version
 * from its Begin after the next Welcome, and the newest version is re-sent after any reconnect
 * to a coordinator that does not hold it. Every Begin is stamped with the learner's resume epoch
 * as it goes out (`epochOf`), so a version published before a new epoch was assigned (close 4008)
 * is re-sent under the new one.
 */
import { WebSocket } from 'ws';
import { encodeMessage } from './codec.js';
import { GrpoError } from './errors.js';
import { compareStamps, epochField, type Stamp } from './epoch.js';
import { Kind } from './protocol.js';
import type { WeightsMsg } from './protocol.js';
import type { EncodedWeights } from './weights-wire.js';
import { weightsMessages } from './weights-wire.js';

const POLL_MS = 10; // re-check bufferedAmount when other traffic filled the socket

interface Upload {
  version: number;
  msgs: WeightsMsg[];
  next: number; // index of the next message to send on this connection
  inFlight: number; // frames handed to the socket whose write callback has not run
  waiting: boolean;
  epoch: number; // bumped when the connection is lost; older callbacks are ignored
  resolve: (outcome: UploadOutcome) => void;
  reject: (err: GrpoError) => void;
}

/** How a publish ended: every frame written (`sent`), or superseded by a newer version first. */
export interface UploadOutcome {
  version: number;
  sent: boolean;
  bytes: number; // payload bytes of the version (its Begin's totalBytes), sent or not
}

export class UploadPump {
  private current: Upload | null = null;
  private latest: EncodedWeights | null = null;
  private epoch = 0;
  private poll: NodeJS.Timeout | null = null;

  /** `epochOf`: the resume epoch the learner runs in now (its last Welcome's). */
  constructor(
    private readonly highWaterMarkBytes: number,
    private readonly epochOf: () => number = () => 0,
  ) {}

  /** The newest version published, or null. */
  get latestVersion(): number | null {
    return this.latest?.begin.version ?? null;
  }

  /** Makes `enc` the version to upload; an upload in progress is superseded (its promise resolves, not sent). */
  publish(enc: EncodedWeights): Promise<UploadOutcome> {
    const old = this.current;
    old?.resolve({ version: old.version, sent: false, bytes: this.latest?.begin.totalBytes ?? 0 });
    this.latest = enc;
    return new Promise<UploadOutcome>((resolve, reject) => {
      this.current = { version: enc.begin.version, msgs: weightsMessages(enc), next: 0, inFlight: 0, waiting: false, epoch: this.epoch, resolve, reject };
    });
  }

  /**
   * After a Welcome: restart an interrupted upload, or re-send the newest version when the
   * coordinator holds nothing or an older (epoch, version) than it in the current epoch.
   */
  resume(ws: WebSocket, coordinator: Stamp | null): void {
    const latest = this.latest;
    const mine = latest === null ? null : { epoch: this.epochOf(), version: latest.begin.version };
    if (this.current === null && latest !== null && mine !== null && (coordinator === null || compareStamps(coordinator, mine) < 0)) {
      const noop = (): void => {};
      this.current = { version: latest.begin.version, msgs: weightsMessages(latest), next: 0, inFlight: 0, waiting: false, epoch: this.epoch, resolve: noop, reject: noop };
    }
    this.pump(ws);
  }

  /** The connection was lost: the upload in progress starts again from its Begin next time. */
  interrupt(): void {
    this.epoch += 1;
    if (this.poll !== null) clearTimeout(this.poll);
    this.poll = null;
    const u = this.current;
    if (u === null) return;
    Object.assign(u, { next: 0, inFlight: 0, waiting: false, epoch: this.epoch });
  }

  /** The client is closing: a pending publish rejects. */
  stop(): void {
    this.interrupt();
    this.current?.reject(new GrpoError('GRPO_ERR_CLOSED', `client closed while uploading weights v${this.current.version}`));
    this.current = null;
  }

  /** Sends frames until the high-water mark or the end of the version. */
  pump(ws: WebSocket): void {
    const u = this.current;
    if (u === null || u.waiting) return;
    while (u.next < u.msgs.length) {
      if (ws.readyState !== WebSocket.OPEN) return;
      if (ws.bufferedAmount >= this.highWaterMarkBytes) {
        u.waiting = true;
        if (u.inFlight === 0) this.poll = setTimeout(() => this.wake(ws, u.epoch), POLL_MS); // no callback of ours will come
        return;
      }
      const last = u.next === u.msgs.length - 1;
      const msg = u.msgs[u.next++];
      const frame = encodeMessage(msg.kind === Kind.WeightsBegin ? { ...msg, ...epochField(this.epochOf()) } : msg);
      u.inFlight += 1;
      ws.send(frame, (err) => this.written(ws, u, err, last));
    }
  }

  private written(ws: WebSocket, u: Upload, err: Error | null | undefined, last: boolean): void {
    if (u.epoch !== this.epoch) return; // from a connection already lost
    u.inFlight -= 1;
    if (err) return; // the close handler calls interrupt()
    if (last && this.current === u) {
      this.current = null;
      u.resolve({ version: u.version, sent: true, bytes: this.latest?.begin.totalBytes ?? 0 });
    }
    this.wake(ws, this.epoch);
  }

  private wake(ws: WebSocket, epoch: number): void {
    this.poll = null;
    const c = this.current;
    if (c === null || epoch !== this.epoch || !c.waiting) return;
    c.waiting = false;
    this.pump(ws);
  }
}
