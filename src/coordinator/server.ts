/**
 * HTTP and WebSocket on one port: `GET /healthz`, `GET /metrics`, the authenticated upgrade, frame decoding,
 * the Hello gate, bad-frame accounting, pings and peer timeouts. What the messages mean is the
 * hooks' business (router.ts); this module only gets valid, role-permitted messages to them.
 */
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Registry } from 'prom-client';
import { WebSocketServer } from 'ws';
import type { RawData, WebSocket } from 'ws';
import { clipText } from '../shared/clip.js';
import { claimedKind, decodeMessage } from '../shared/codec.js';
import { GrpoError, isGrpoError } from '../shared/errors.js';
import { handleMetricsRequest } from '../shared/metrics/server.js';
import { ACCEPTED_FROM, CloseCode, isKind, Kind, kindName, WireError } from '../shared/protocol.js';
import type { HelloMsg, Message, ProtocolLogger } from '../shared/protocol.js';
import { refuseUpgrade, TokenCheck } from './auth.js';
import type { Grant, RoleTokens } from './auth.js';
import { limitedLog } from './log-limit.js';
import { Peer } from './peer.js';

export interface ServerOptions {
  host: string;
  port: number; // 0 = any free port
  tokens: RoleTokens; // per role; null = that role needs no token (loopback only, see auth.ts)
  maxPayloadBytes: number;
  heartbeatMs: number;
  peerTimeoutMs: number;
  helloTimeoutMs: number;
  sweepMs: number;
  maxBadFrames: number;
  maxBufferedBytes: number; // a peer with more than this waiting in its send buffer is terminated
  log: ProtocolLogger;
  metrics: Registry; // served at GET /metrics (no token: Prometheus scrapes it like /healthz)
}

export interface ServerHooks {
  health(): unknown; // body of GET /healthz
  hello(peer: Peer, msg: HelloMsg, now: number): void; // may close the peer
  message(peer: Peer, msg: Message, raw: Uint8Array, now: number): void; // may throw GrpoError
  closed(peer: Peer, code: number, reason: string): void;
  heartbeatDue(peer: Peer, now: number): void;
  tick(now: number): void; // every sweepMs
}

function toBytes(data: RawData): Uint8Array {
  if (Array.isArray(data)) return Buffer.concat(data);
  return data instanceof ArrayBuffer ? new Uint8Array(data) : data;
}

export class CoordinatorServer {
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  private readonly auth: TokenCheck;
  private readonly peers = new Set<Peer>();
  private sweepTimer: NodeJS.Timeout | null = null;
  private connSeq = 0;
  refusedUpgrades = 0;
  badFrames = 0;

  constructor(
    private readonly opts: ServerOptions,
    private readonly hooks: ServerHooks,
  ) {
    this.auth = new TokenCheck(opts.tokens);
    this.http = createServer((req, res) => this.onRequest(req, res));
    // skipUTF8Validation: text frames are never decoded, only answered with BAD_FRAME; validating
    // them would close a peer that sent invalid UTF-8 with 1007 instead of the documented error
    this.wss = new WebSocketServer({ noServer: true, maxPayload: opts.maxPayloadBytes, perMessageDeflate: false, skipUTF8Validation: true });
    this.http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.opts.port, this.opts.host, () => {
        this.http.off('error', reject);
        this.sweepTimer = setInterval(() => this.sweep(), this.opts.sweepMs);
        this.sweepTimer.unref();
        resolve((this.http.address() as AddressInfo).port);
      });
    });
  }

  connected(): Peer[] {
    return [...this.peers];
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && path === '/healthz') json(200, this.hooks.health());
    else if (req.method === 'GET' && path === '/metrics') void handleMetricsRequest(this.opts.metrics, res);
    else json(404, { error: `no route ${req.method} ${path}; try GET /healthz, GET /metrics or a WebSocket upgrade` });
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', (err) => this.opts.log('warn', 'upgrade_socket_error', { error: err.message }));
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    const grant = this.auth.grant(req);
    if (grant === null) {
      this.refusedUpgrades += 1;
      this.opts.log('warn', 'auth_refused', { remote, hasHeader: req.headers.authorization !== undefined });
      refuseUpgrade(socket, 401, 'missing or wrong bearer token');
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, remote, grant));
  }

  private onConnection(ws: WebSocket, remote: string, grant: Grant): void {
    const peer = new Peer(ws, remote, Date.now(), ++this.connSeq, grant);
    peer.maxBufferedBytes = this.opts.maxBufferedBytes;
    peer.onBacklog = (bytes) => this.opts.log('warn', 'peer_backlog', { session: peer.sessionId, remote, bufferedBytes: bytes, limit: this.opts.maxBufferedBytes });
    this.peers.add(peer);
    this.opts.log('debug', 'connected', { session: peer.sessionId, remote });
    ws.on('message', (data, isBinary) => this.onFrame(peer, toBytes(data), isBinary));
    ws.on('pong', () => {
      peer.lastSeen = Date.now();
    });
    ws.on('error', (err) => limitedLog(this.opts.log, peer.logLimit, 'warn', 'socket_error', { session: peer.sessionId, error: clipText(err.message) }));
    ws.on('close', (code, reason) => {
      this.peers.delete(peer);
      this.hooks.closed(peer, code, reason.toString());
    });
  }

  private onFrame(peer: Peer, data: Uint8Array, isBinary: boolean): void {
    if (!peer.open) return; // closing (e.g. after a bad Hello): nothing more is read on this socket
    const now = Date.now();
    peer.lastSeen = now;
    if (peer.role === null) {
      this.firstFrame(peer, data, isBinary, now);
      return;
    }
    let msg: Message;
    try {
      if (!isBinary) throw new GrpoError(WireError.BadFrame, 'text frame; every message is a binary frame');
      msg = decodeMessage(data);
    } catch (err) {
      const e = isGrpoError(err) ? err : new GrpoError(WireError.BadFrame, String(err));
      // the role is checked before the fields: a kind this role may not send is unexpected, well-formed or not
      const claimed = e.code === WireError.BadMessage ? claimedKind(data) : null;
      if (claimed !== null && isKind(claimed) && !ACCEPTED_FROM[peer.role].has(claimed)) {
        this.rejectFrame(peer, this.unexpected(peer, claimed));
      } else {
        this.rejectFrame(peer, e);
      }
      return;
    }
    if (!ACCEPTED_FROM[peer.role].has(msg.kind)) {
      this.rejectFrame(peer, this.unexpected(peer, msg.kind));
      return;
    }
    try {
      this.hooks.message(peer, msg, data, now);
    } catch (err) {
      if (!isGrpoError(err)) limitedLog(this.opts.log, peer.logLimit, 'error', 'handler_failed', { session: peer.sessionId, kind: kindName(msg.kind), error: clipText(String(err)) });
      const e = isGrpoError(err) ? err : new GrpoError('GRPO_ERR_INTERNAL', `coordinator failed on ${kindName(msg.kind)}: ${clipText(String(err))}`);
      peer.send({ kind: Kind.Error, code: e.code, message: e.message });
    }
  }

  private unexpected(peer: Peer, kind: number): GrpoError {
    const why = kind === Kind.Hello ? 'a second Hello' : `${kindName(kind)} from a ${peer.role}`;
    return new GrpoError(WireError.UnexpectedMessage, `${why} is not accepted; see docs/protocol.md`);
  }

  /**
   * The first frame must be a valid Hello. Anything else is answered with one coded Error and the
   * connection is closed with 4001 (docs/protocol.md sections 5 and 8): HELLO_REQUIRED for a frame that
   * is not a Hello (a text frame, an undecodable one, another kind), BAD_MESSAGE for a Hello with
   * a missing or mistyped field. Frames after it on that socket are not read (onFrame).
   */
  private firstFrame(peer: Peer, data: Uint8Array, isBinary: boolean, now: number): void {
    const refuse = (code: string, message: string): void => {
      this.badFrames += 1;
      const clipped = clipText(message); // a bad first frame may be megabytes: quote a prefix
      limitedLog(this.opts.log, peer.logLimit, 'warn', 'bad_hello', { session: peer.sessionId, code, error: clipped });
      peer.send({ kind: Kind.Error, code, message: clipped });
      peer.close(CloseCode.HelloRequired, code === WireError.BadMessage ? 'bad Hello' : 'Hello required');
    };
    if (!isBinary) {
      refuse(WireError.HelloRequired, 'first message must be Hello, got a text frame; every message is a binary frame');
      return;
    }
    let msg: Message;
    try {
      msg = decodeMessage(data);
    } catch (err) {
      const e = isGrpoError(err) ? err : new GrpoError(WireError.BadFrame, String(err));
      if (claimedKind(data) === Kind.Hello) refuse(WireError.BadMessage, `${e.message}; see docs/protocol.md section 4`);
      else refuse(WireError.HelloRequired, `first message must be Hello, got a frame that is not one (${e.code}: ${e.message})`);
      return;
    }
    if (msg.kind !== Kind.Hello) {
      refuse(WireError.HelloRequired, `first message must be Hello, got ${kindName(msg.kind)}`);
      return;
    }
    if (!peer.grant.roles.has(msg.role)) {
      // credentials by role (auth.ts): a worker's token never opens a learner session
      this.opts.log('warn', 'role_forbidden', { session: peer.sessionId, remote: peer.remote, role: msg.role });
      const message = `this credential does not open a ${msg.role} session; a ${msg.role} presents GRPO_${msg.role.toUpperCase()}_TOKEN (or the shared GRPO_TOKEN)`;
      peer.send({ kind: Kind.Error, code: WireError.RoleForbidden, message });
      peer.close(CloseCode.RoleForbidden, 'credential does not open this role');
      return;
    }
    this.hooks.hello(peer, msg, now);
  }

  /** Answers a bad frame with a coded Error; too many of them close the connection. */
  private rejectFrame(peer: Peer, err: GrpoError): void {
    this.badFrames += 1;
    peer.badFrames += 1;
    const message = clipText(err.message); // decode errors are clipped already; this bounds every other kind
    limitedLog(this.opts.log, peer.logLimit, 'warn', 'bad_frame', { session: peer.sessionId, code: err.code, error: message, count: peer.badFrames });
    peer.send({ kind: Kind.Error, code: err.code, message });
    if (peer.badFrames >= this.opts.maxBadFrames) {
      peer.close(CloseCode.BadFrames, `${peer.badFrames} bad frames (limit ${this.opts.maxBadFrames})`);
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const peer of this.peers) {
      if (peer.role === null && now - peer.connectedAt > this.opts.helloTimeoutMs) {
        peer.close(CloseCode.HelloRequired, `no Hello within ${this.opts.helloTimeoutMs} ms`);
      } else if (now - peer.lastSeen > this.opts.peerTimeoutMs) {
        this.opts.log('warn', 'peer_timeout', { session: peer.sessionId, quietMs: now - peer.lastSeen });
        peer.ws.terminate(); // no close handshake with a peer that does not answer
      } else if (now - peer.lastPing >= this.opts.heartbeatMs) {
        peer.lastPing = now;
        peer.ws.ping();
        if (peer.role !== null) this.hooks.heartbeatDue(peer, now);
      }
    }
    this.hooks.tick(now);
  }

  /** Closes every connection (4004), stops listening; resolves when the port is free. */
  async close(): Promise<void> {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    for (const peer of this.peers) peer.close(CloseCode.ShuttingDown, 'coordinator shutting down');
    const grace = setTimeout(() => {
      for (const peer of this.peers) peer.ws.terminate();
    }, 1_000);
    grace.unref();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
    clearTimeout(grace);
  }
}
