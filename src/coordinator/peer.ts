/**
 * One WebSocket connection to the coordinator, before and after its Hello.
 */
import { WebSocket } from 'ws';
import { encodeMessage } from '../shared/codec.js';
import type { Message, Role } from '../shared/protocol.js';

export class Peer {
  role: Role | null = null; // null until Hello
  sessionId: string; // `c<n>` until Hello, then `w<n>` or `l<n>`
  name = '';
  capacity = 0;
  ready = false; // worker sent Ready
  policyVersion: number | null = null; // reported by Hello/Ready
  lastSeen: number; // ms since the epoch of the last frame or pong received
  lastPing: number;
  badFrames = 0;

  constructor(
    readonly ws: WebSocket,
    readonly remote: string,
    readonly connectedAt: number,
    connId: number,
  ) {
    this.sessionId = `c${connId}`;
    this.lastSeen = connectedAt;
    this.lastPing = connectedAt;
  }

  get open(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }

  /** Encodes and sends; a closed socket drops the message (its state is cleaned up on 'close'). */
  send(msg: Message): void {
    if (this.open) this.ws.send(encodeMessage(msg));
  }

  /** Sends an already encoded frame; `cb` runs once it is written out (or failed). */
  sendFrame(frame: Uint8Array, cb: (err?: Error | null) => void): void {
    if (!this.open) {
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
