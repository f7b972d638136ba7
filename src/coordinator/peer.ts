/**
 * One WebSocket connection to the coordinator, before and after its Hello.
 */
import { WebSocket } from 'ws';
import { LogLimit } from './log-limit.js';
import { encodeMessage } from '../shared/codec.js';
import { sendCoalesced } from '../shared/ws-coalesce.js';
import type { Message, Role } from '../shared/protocol.js';
import type { Grant } from './auth.js';

export class Peer {
  role: Role | null = null; // null until Hello
  sessionId: string; // `c<n>` until Hello, then `w<n>` or `l<n>`
  name = '';
  capacity = 0;
  ready = false; // worker sent Ready
  policyVersion: number | null = null; // reported by Hello/Ready
  epoch = 0; // worker: resume epoch of the weights it reported in Hello (docs/protocol.md, "Resume epochs")
  lastSeen: number; // ms since the epoch of the last frame or pong received
  lastPing: number;
  badFrames = 0;
  readonly logLimit = new LogLimit(); // this peer's warning lines (log-limit.ts)
  /** Bytes that may wait in this socket's send buffer; past it the peer is terminated (it is not reading). */
  maxBufferedBytes = Number.POSITIVE_INFINITY;
  onBacklog: ((bytes: number) => void) | null = null; // told once, when the peer is terminated for it
  private backlogged = false;

  constructor(
    readonly ws: WebSocket,
    readonly remote: string,
    readonly connectedAt: number,
    connId: number,
    readonly grant: Grant = { roles: new Set(['worker', 'learner']), learnerCredential: false },
  ) {
    this.sessionId = `c${connId}`;
    this.lastSeen = connectedAt;
    this.lastPing = connectedAt;
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Encodes and sends (with the other frames of this turn: ws-coalesce.ts); a closed socket drops the message (its state is cleaned up on 'close'). */
  send(msg: Message): void {
    if (this.open && this.roomFor()) sendCoalesced(this.ws, encodeMessage(msg));
  }

  /**
   * False (and the peer terminated) when more than maxBufferedBytes already wait for it: a peer
   * that does not read its socket cannot make the coordinator buffer without bound.
   */
  private roomFor(): boolean {
    const waiting = this.ws.bufferedAmount;
    if (waiting <= this.maxBufferedBytes) return true;
    if (!this.backlogged) {
      this.backlogged = true;
      this.onBacklog?.(waiting);
      this.ws.terminate();
    }
    return false;
  }

  /** Sends an already encoded frame; `cb` runs once it is written out (or failed). */
  sendFrame(frame: Uint8Array, cb: (err?: Error | null) => void): void {
    if (!this.open || !this.roomFor()) {
      cb(new Error('socket not open'));
      return;
    }
    this.ws.send(frame, { binary: true }, cb);
  }

  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  close(code: number, reason: string): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code, reason);
  }
}
