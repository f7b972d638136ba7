/**
 * ProtocolClient: the one WebSocket client of the coordinator, used by rollout workers and the
 * learner. It says Hello, keeps the connection alive (pings, Heartbeats listing the worker's
 * leases, a peer timeout), reconnects with exponential backoff, assembles weights for workers
 * (`weights` event), uploads weights for the learner (re-sent after a reconnect when the
 * coordinator lacks them), and hands every other message to typed handlers (./ws-dispatch.ts).
 *
 *   const c = new ProtocolClient({ url, role: 'worker', name: 'w1', capacity: 4 });
 *   c.onEvent('weights', ({ version, tensors }) => { load(tensors); c.send({ kind: Kind.Ready, policyVersion: version }); });
 *   c.on(Kind.Lease, (lease) => run(lease));
 *   await c.start();
 */
import { WebSocket } from 'ws';
import { decodeMessage, encodeMessage } from './codec.js';
import { sendCoalesced } from './ws-coalesce.js';
import { GrpoError, isGrpoError } from './errors.js';
import type { NamedHostTensors } from './host-tensor.js';
import { FATAL_CLOSE_CODES, CloseCode, Kind, PROTOCOL_DEFAULTS, PROTOCOL_VERSION, silentLogger, WireError } from './protocol.js';
import type { AdapterInfo, Message, MessageOf, ProtocolLogger, Role, WeightsEncoding, WelcomeMsg } from './protocol.js';
import { UploadPump, type UploadOutcome } from './ws-upload.js';
import { encodeWeights, WeightsAssembler } from './weights-wire.js';
import { roleToken } from './credentials.js';
import { describeStamp, HeldWeights, type Stamp } from './epoch.js';
import { MessageDispatch, type ClientEvents, type ReceivedWeights } from './ws-dispatch.js';

export type { ClientEvents, ReceivedWeights } from './ws-dispatch.js';

export interface ProtocolClientOptions {
  url: string; // ws://host:port
  role: Role;
  name: string;
  capacity?: number; // worker: groups sampled at once (default 1)
  token?: string | null; // default: env GRPO_<ROLE>_TOKEN, else GRPO_TOKEN (credentials.ts); null = send none
  runKey?: string; // learner: the run key of its checkpoint, sent in Hello (see HelloMsg.runKey)
  /** Learner: the newest resume epoch its checkpoint recorded (HelloMsg.epoch with newEpoch); absent for a new run. */
  epoch?: number;
  maxPayloadBytes?: number;
  maxWeightsBytes?: number;
  highWaterMarkBytes?: number; // weights upload pauses above this bufferedAmount
  weightsChunkBytes?: number; // default chunk size of publishWeights
  reconnectInitialMs?: number;
  reconnectMaxMs?: number;
  log?: ProtocolLogger;
}

export type { UploadOutcome } from './ws-upload.js';

export class ProtocolClient {
  private ws: WebSocket | null = null;
  private welcomeMsg: WelcomeMsg | null = null;
  private closed = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private lastSeen = 0;
  private readonly dispatcher: MessageDispatch;
  private readonly leases = new Map<string, Set<string>>(); // leaseId -> group ids not yet reported
  private readonly assembler: WeightsAssembler;
  private readonly upload: UploadPump;
  private lastReady: MessageOf<typeof Kind.Ready> | null = null;
  private announced: number | null = null; // learner: newest PolicyVersion sent
  private assignedEpoch: number | null = null; // learner: the epoch its last Welcome gave it
  private askNewEpoch = true; // learner: the next Hello asks for a new epoch (first of the process, after close 4008)
  private readonly held = new HeldWeights(); // worker: (epoch, version) of the newest weights accepted
  private startPromise: Promise<WelcomeMsg> | null = null;
  private settleStart: { resolve: (w: WelcomeMsg) => void; reject: (e: GrpoError) => void } | null = null;
  private readonly opts: Required<Omit<ProtocolClientOptions, 'token'>> & { token: string | null };
  weightsVersion: number | null = null; // worker: newest version assembled

  constructor(options: ProtocolClientOptions) {
    const given = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as ProtocolClientOptions;
    this.opts = {
      capacity: 1,
      maxPayloadBytes: PROTOCOL_DEFAULTS.maxPayloadBytes,
      maxWeightsBytes: PROTOCOL_DEFAULTS.maxWeightsBytes,
      highWaterMarkBytes: PROTOCOL_DEFAULTS.highWaterMarkBytes,
      weightsChunkBytes: PROTOCOL_DEFAULTS.weightsChunkBytes,
      reconnectInitialMs: PROTOCOL_DEFAULTS.reconnectInitialMs,
      reconnectMaxMs: PROTOCOL_DEFAULTS.reconnectMaxMs,
      log: silentLogger,
      ...given,
      runKey: options.runKey ?? '',
      epoch: options.epoch ?? -1,
      token: options.token === undefined ? roleToken(options.role) : options.token,
    };
    this.dispatcher = new MessageDispatch(this.opts.log, this.opts.role);
    this.assembler = new WeightsAssembler({ maxTotalBytes: this.opts.maxWeightsBytes });
    this.upload = new UploadPump(this.opts.highWaterMarkBytes, () => this.assignedEpoch ?? 0);
  }

  get connected(): boolean {
    return this.welcomeMsg !== null && this.ws?.readyState === WebSocket.OPEN;
  }

  get welcome(): WelcomeMsg | null {
    return this.welcomeMsg;
  }

  /** Learner: the resume epoch the coordinator assigned (its last Welcome), or null before one. */
  get epoch(): number | null {
    return this.assignedEpoch;
  }

  /** Worker: the resume epoch of the newest weights accepted (0 before any). */
  get weightsEpoch(): number {
    return this.held.stamp?.epoch ?? 0;
  }

  /** Connects (retrying until the coordinator answers); resolves with the first Welcome. */
  start(): Promise<WelcomeMsg> {
    if (this.startPromise === null) {
      this.startPromise = new Promise<WelcomeMsg>((resolve, reject) => {
        this.settleStart = { resolve, reject };
        this.connect();
      });
      this.startPromise.catch(() => {}); // a caller that never awaits start() gets no unhandled rejection
    }
    return this.startPromise;
  }

  /** Subscribes to one message kind; returns the unsubscribe function. */
  on<K extends Kind>(kind: K, handler: (msg: MessageOf<K>) => void): () => void {
    return this.dispatcher.on(kind, handler);
  }

  onEvent<E extends keyof ClientEvents>(event: E, handler: ClientEvents[E]): () => void {
    return this.dispatcher.onEvent(event, handler);
  }

  /** The next message of `kind` that satisfies `pred`; rejects after `timeoutMs`. */
  next<K extends Kind>(kind: K, timeoutMs = 10_000, pred: (msg: MessageOf<K>) => boolean = () => true): Promise<MessageOf<K>> {
    return this.dispatcher.next(kind, timeoutMs, pred);
  }

  /**
   * Sends one message now; false when not connected (the message is dropped: leases die with
   * the connection, and the learner re-sends its Enqueues and Verdicts on `welcome`).
   */
  send(msg: Message): boolean {
    if (msg.kind === Kind.Groups) for (const r of msg.results) this.settleLeaseGroup(msg.leaseId, r.groupId);
    if (msg.kind === Kind.GroupFailed) this.settleLeaseGroup(msg.leaseId, msg.groupId);
    if (msg.kind === Kind.Ready) this.lastReady = msg;
    if (msg.kind === Kind.PolicyVersion) this.announced = Math.max(this.announced ?? msg.version, msg.version);
    if (!this.connected) return false;
    sendCoalesced(this.ws as WebSocket, encodeMessage(msg));
    return true;
  }

  /**
   * Messages received that nothing handled, by kind name (a kind the client does not consume
   * itself and no `on()` handler was subscribed to when it arrived).
   */
  unhandledMessages(): Record<string, number> {
    return this.dispatcher.unhandledMessages();
  }

  /** Leases received and not yet fully reported (what Heartbeats list). */
  activeLeases(): string[] {
    return [...this.leases.keys()];
  }

  /**
   * Learner: uploads one weights version. Resolves once all its frames are written to the
   * socket (`sent: true`), or when a newer publish supersedes it (`sent: false`). After a reconnect the newest published
   * version is uploaded again if the coordinator does not hold it.
   */
  publishWeights(
    tensors: NamedHostTensors,
    version: number,
    encoding: WeightsEncoding,
    chunkBytes = this.opts.weightsChunkBytes,
    adapter?: AdapterInfo,
  ): Promise<UploadOutcome> {
    const done = this.upload.publish(encodeWeights(tensors, version, encoding, chunkBytes, adapter));
    if (this.connected) this.upload.pump(this.ws as WebSocket);
    return done;
  }

  /** Stops reconnecting and closes the connection (1000); resolves when it is closed. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.reconnectTimer !== null) clearTimeout(this.reconnectTimer);
    this.stopHeartbeat();
    this.upload.stop();
    this.settleStart?.reject(new GrpoError('GRPO_ERR_CLOSED', 'client closed before the coordinator welcomed it'));
    this.settleStart = null;
    const ws = this.ws;
    if (ws === null || ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      ws.once('close', () => resolve());
      if (ws.readyState === WebSocket.CONNECTING) ws.terminate();
      else ws.close(1000, 'client closing');
      setTimeout(() => ws.terminate(), 1_000).unref();
    });
  }

  private connect(): void {
    const headers: Record<string, string> = this.opts.token === null ? {} : { authorization: `Bearer ${this.opts.token}` };
    const ws = new WebSocket(this.opts.url, { headers, maxPayload: this.opts.maxPayloadBytes, perMessageDeflate: false, handshakeTimeout: 10_000 });
    this.ws = ws;
    ws.on('open', () => {
      this.lastSeen = Date.now();
      ws.send(encodeMessage({
        kind: Kind.Hello,
        protocolVersion: PROTOCOL_VERSION,
        role: this.opts.role,
        name: this.opts.name,
        capacity: this.opts.role === 'worker' ? this.opts.capacity : 0,
        // Worker: the weights it holds. Learner: its newest published version, so a learner
        // resumed from an older checkpoint rolls the coordinator back to it.
        policyVersion: this.opts.role === 'learner' ? this.learnerVersion() : this.weightsVersion,
        ...(this.opts.role === 'learner' && this.opts.runKey !== '' ? { runKey: this.opts.runKey } : {}),
        ...this.helloEpoch(),
      }));
    });
    ws.on('unexpected-response', (_req, res) => {
      if (res.statusCode === 401) {
        this.fail(new GrpoError(WireError.Auth, `coordinator ${this.opts.url} refused the token (HTTP 401); check --token / GRPO_TOKEN`));
      } else {
        this.opts.log('warn', 'upgrade_refused', { url: this.opts.url, status: res.statusCode });
      }
      ws.terminate();
    });
    ws.on('message', (data, isBinary) => this.onFrame(ws, data as Buffer, isBinary));
    ws.on('pong', () => {
      this.lastSeen = Date.now();
    });
    ws.on('error', (err) => this.opts.log('debug', 'client_socket_error', { url: this.opts.url, error: err.message }));
    ws.on('close', (code, reason) => this.onClose(ws, code, reason.toString()));
  }

  private onFrame(ws: WebSocket, data: Buffer, isBinary: boolean): void {
    this.lastSeen = Date.now();
    let msg: Message;
    try {
      if (!isBinary) throw new GrpoError(WireError.BadFrame, 'text frame from the coordinator');
      msg = decodeMessage(data);
    } catch (err) {
      const e = isGrpoError(err) ? err : new GrpoError(WireError.BadFrame, String(err));
      this.opts.log('warn', 'client_bad_frame', { code: e.code, error: e.message });
      this.dispatcher.emit('error', e);
      return;
    }
    switch (msg.kind) {
      case Kind.Welcome:
        this.onWelcome(ws, msg);
        break;
      case Kind.Lease:
        this.leases.set(msg.leaseId, new Set(msg.groups.map((g) => g.groupId)));
        break;
      case Kind.LeaseRevoked:
        this.leases.delete(msg.leaseId);
        break;
      case Kind.Error:
        this.opts.log('warn', 'coordinator_error', { code: msg.code, error: msg.message, ref: msg.ref });
        break;
      case Kind.WeightsBegin:
      case Kind.WeightsChunk:
      case Kind.WeightsEnd:
        this.onWeights(ws, msg);
        break;
      default:
        break;
    }
    this.dispatcher.dispatch(msg);
  }

  /**
   * The epoch fields of Hello (docs/protocol.md, "Resume epochs"). Worker: the epoch of its
   * weights. Learner: a new epoch asked for with the newest one it knows (its checkpoint's, or the
   * one it ran in before close 4008), else the epoch it runs in (a reconnect).
   */
  private helloEpoch(): { epoch?: number; newEpoch?: boolean } {
    if (this.opts.role === 'worker') return this.weightsEpoch > 0 ? { epoch: this.weightsEpoch } : {};
    const known = Math.max(this.assignedEpoch ?? -1, this.opts.epoch);
    if (this.askNewEpoch) return { ...(known >= 0 ? { epoch: known } : {}), newEpoch: true };
    return { epoch: known };
  }

  private onWelcome(ws: WebSocket, msg: WelcomeMsg): void {
    this.welcomeMsg = msg;
    this.attempt = 0;
    this.startHeartbeat(ws, msg);
    if (this.opts.role === 'learner') {
      const epoch = msg.epoch ?? 0;
      if (epoch !== this.assignedEpoch) this.opts.log(this.assignedEpoch === null ? 'info' : 'warn', 'client_epoch', { epoch, before: this.assignedEpoch });
      this.assignedEpoch = epoch;
      this.askNewEpoch = false;
    }
    this.opts.log('info', 'client_welcomed', { session: msg.sessionId, role: msg.role, policyVersion: msg.policyVersion, epoch: msg.epoch ?? 0 });
    if (this.lastReady !== null) ws.send(encodeMessage(this.lastReady)); // a new session starts not ready
    this.upload.resume(ws, msg.weightsVersion === null ? null : { epoch: msg.weightsEpoch ?? 0, version: msg.weightsVersion });
    this.settleStart?.resolve(msg);
    this.settleStart = null;
    this.dispatcher.emit('welcome', msg);
  }

  private onWeights(ws: WebSocket, msg: MessageOf<typeof Kind.WeightsBegin | typeof Kind.WeightsChunk | typeof Kind.WeightsEnd>): void {
    try {
      const done = this.assembler.pushAndDecode(msg);
      if (done === null) return;
      if (!this.acceptWeights(ws, { epoch: done.epoch, version: done.version })) return;
      this.weightsVersion = done.version;
      this.dispatcher.emit('weights', done);
    } catch (err) {
      const e = isGrpoError(err) ? err : new GrpoError(WireError.WeightsSequence, String(err));
      this.opts.log('warn', 'client_weights_failed', { code: e.code, error: e.message });
      this.dispatcher.emit('error', e);
      // A fresh session makes the coordinator send the newest version again from its Begin.
      ws.close(CloseCode.WeightsCorrupt, e.code);
    }
  }

  /**
   * Worker: the policy never goes backwards. Weights load only when their (epoch, version) is
   * above the held pair; the same pair again (a resend after a reconnect) is ignored, a lower one
   * is refused with GRPO_ERR_WEIGHTS_BACKWARDS, told to the coordinator, and the worker keeps
   * sampling with what it holds.
   */
  private acceptWeights(ws: WebSocket, got: Stamp): boolean {
    const err = this.held.offer(got);
    if (err === 'new') return true;
    if (err === 'repeat') {
      this.opts.log('debug', 'client_weights_repeat', { version: describeStamp(got) });
      return false;
    }
    this.opts.log('warn', 'client_weights_refused', { code: err.code, error: err.message });
    if (ws.readyState === WebSocket.OPEN) ws.send(encodeMessage({ kind: Kind.Error, code: err.code, message: err.message, ref: describeStamp(got) }));
    this.dispatcher.emit('error', err);
    return false;
  }

  /** Learner: the newest version it announced or published, or null. */
  private learnerVersion(): number | null {
    const published = this.upload.latestVersion;
    if (published === null || this.announced === null) return published ?? this.announced;
    return Math.max(published, this.announced);
  }

  private settleLeaseGroup(leaseId: string, groupId: string): void {
    const groups = this.leases.get(leaseId);
    if (groups === undefined) return;
    groups.delete(groupId);
    if (groups.size === 0) this.leases.delete(leaseId);
  }

  private startHeartbeat(ws: WebSocket, welcome: WelcomeMsg): void {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => {
      if (Date.now() - this.lastSeen > welcome.peerTimeoutMs) {
        this.opts.log('warn', 'client_peer_timeout', { url: this.opts.url, quietMs: Date.now() - this.lastSeen });
        ws.terminate();
        return;
      }
      ws.ping();
      ws.send(encodeMessage({ kind: Kind.Heartbeat, time: Date.now(), leaseIds: this.activeLeases() }));
    }, welcome.heartbeatMs);
    this.heartbeatTimer.unref();
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer !== null) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  private onClose(ws: WebSocket, code: number, reason: string): void {
    if (this.ws !== ws) return;
    const wasWelcomed = this.welcomeMsg !== null;
    this.welcomeMsg = null;
    this.stopHeartbeat();
    this.leases.clear(); // the coordinator re-dispatches them
    this.upload.interrupt();
    if (wasWelcomed) this.dispatcher.emit('disconnect', { code, reason });
    if (this.closed) return;
    if (code === CloseCode.EpochBehind && this.opts.role === 'learner') this.askNewEpoch = true;
    if (FATAL_CLOSE_CODES.has(code)) {
      const wire = code === CloseCode.RoleForbidden ? WireError.RoleForbidden : code === CloseCode.LearnerReplaced ? WireError.LearnerReplaced : WireError.ProtocolVersion;
      this.fail(new GrpoError(wire, `coordinator closed the connection (${code} ${reason}); not reconnecting`));
      return;
    }
    const delay = Math.min(this.opts.reconnectMaxMs, this.opts.reconnectInitialMs * 2 ** this.attempt) * (0.8 + 0.4 * Math.random());
    this.attempt += 1;
    this.opts.log(wasWelcomed ? 'warn' : 'debug', 'client_reconnecting', { url: this.opts.url, code, reason, delayMs: Math.round(delay) });
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (!this.closed) this.connect();
    }, delay);
  }

  private fail(err: GrpoError): void {
    if (this.closed) return;
    this.closed = true;
    this.opts.log('error', 'client_fatal', { code: err.code, error: err.message });
    this.settleStart?.reject(err);
    this.settleStart = null;
    this.dispatcher.emit('fatal', err);
  }
}
