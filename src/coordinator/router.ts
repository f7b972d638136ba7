/**
 * What the coordinator does with each message: sessions (Hello/Welcome, one learner at a time),
 * work accounting (ledger + scheduler), result delivery to the learner, policy versions and the
 * weights upload and fan-out. Every handler is synchronous; the server calls them one at a time.
 */
import { assertNever, GrpoError } from '../shared/errors.js';
import { CloseCode, Kind, PROTOCOL_VERSION, WireError } from '../shared/protocol.js';
import type { HelloMsg, Message, ProtocolLogger, RunSpecMsg, WeightsMsg } from '../shared/protocol.js';
import { epochField } from '../shared/epoch.js';
import { Epochs } from './epochs.js';
import { LearnerSlot } from './learner-slot.js';
import { Ledger } from './ledger.js';
import { limitedLog } from './log-limit.js';
import { clipText, ECHO_CHARS } from '../shared/clip.js';
import type { LedgerCounters, LedgerGauges } from './ledger.js';
import type { Peer } from './peer.js';
import { Scheduler } from './scheduler.js';
import type { ServerHooks } from './server.js';
import { Fanout, WeightsStore, weightsStats } from './weights.js';
import type { WeightsStats } from './weights.js';

export interface RouterOptions {
  heartbeatMs: number;
  peerTimeoutMs: number;
  leaseMs: number;
  maxPayloadBytes: number;
  maxWeightsBytes: number;
  highWaterMarkBytes: number;
  maxGroupAttempts: number;
  maxRedispatches: number;
  maxHeldResults: number;
  log: ProtocolLogger;
  /** One weights version fully written to one worker's socket, seconds (the broadcast histogram). */
  onWeightsSent?: (seconds: number) => void;
}

export interface CoordinatorStats {
  uptimeS: number;
  workers: { sessionId: string; name: string; capacity: number; ready: boolean; load: number; policyVersion: number | null }[];
  learner: { sessionId: string; name: string } | null;
  policyVersion: number | null;
  epoch: number | null; // the current resume epoch (docs/protocol.md, "Resume epochs")
  ledger: LedgerCounters & LedgerGauges;
  weights: WeightsStats;
}

export class Router implements ServerHooks {
  readonly ledger: Ledger;
  private readonly scheduler: Scheduler;
  private readonly store: WeightsStore;
  private readonly fanout: Fanout;
  private readonly workers = new Map<string, Peer>();
  private learner: Peer | null = null;
  private policyVersion: number | null = null;
  private runSpec: RunSpecMsg | null = null; // newest from the learner; every worker gets it on join
  private seq = { worker: 0, learner: 0 };
  private readonly slot: LearnerSlot;
  private readonly epochs = new Epochs();
  private droppedUpload: number | null = null; // a version whose Begin was refused (stale epoch): its chunks and End are ignored
  private readonly startedAt = Date.now();

  constructor(private readonly opts: RouterOptions) {
    this.ledger = new Ledger(opts);
    this.slot = new LearnerSlot(3 * opts.heartbeatMs); // three missed pings
    this.scheduler = new Scheduler(this.ledger, opts);
    this.store = new WeightsStore(opts.maxWeightsBytes);
    this.fanout = new Fanout(this.store, opts.highWaterMarkBytes, opts.log, opts.onWeightsSent);
  }

  stats(): CoordinatorStats {
    return {
      uptimeS: (Date.now() - this.startedAt) / 1000,
      workers: [...this.workers.values()].map((w) => ({
        sessionId: w.sessionId,
        name: w.name,
        capacity: w.capacity,
        ready: w.ready,
        load: this.ledger.loadOf(w.sessionId),
        policyVersion: w.policyVersion,
      })),
      learner: this.learner === null ? null : { sessionId: this.learner.sessionId, name: this.learner.name },
      policyVersion: this.policyVersion,
      epoch: this.epochs.current,
      ledger: { ...this.ledger.counters, ...this.ledger.gauges() },
      weights: weightsStats(this.store, this.fanout),
    };
  }

  health(): unknown {
    return { ok: true, protocolVersion: PROTOCOL_VERSION, ...this.stats() };
  }

  hello(peer: Peer, msg: HelloMsg, now: number): void {
    if (msg.protocolVersion !== PROTOCOL_VERSION) {
      const message = `protocol version ${msg.protocolVersion} is not supported; this coordinator speaks ${PROTOCOL_VERSION}`;
      peer.send({ kind: Kind.Error, code: WireError.ProtocolVersion, message });
      peer.close(CloseCode.ProtocolVersion, 'protocol version mismatch');
      return;
    }
    if (msg.role === 'worker' && msg.capacity < 1) {
      peer.send({ kind: Kind.Error, code: WireError.BadMessage, message: `worker capacity ${msg.capacity} must be at least 1` });
      peer.close(CloseCode.HelloRequired, 'bad Hello');
      return;
    }
    if (msg.role === 'learner' && !this.learnerJoins(peer, msg, now)) return;
    if (msg.role === 'worker') {
      peer.epoch = msg.epoch ?? 0;
      if (this.epochs.worker(msg.epoch) && this.learner !== null) {
        // the learner was given an epoch below weights this worker holds: it reconnects for a new one
        this.opts.log('warn', 'epoch_behind', { session: peer.sessionId, workerEpoch: peer.epoch, epoch: this.epochs.current, learner: this.learner.sessionId });
        this.learner.close(CloseCode.EpochBehind, 'a worker holds weights of a newer epoch');
      }
    }
    peer.role = msg.role;
    peer.name = msg.name;
    peer.capacity = msg.role === 'worker' ? msg.capacity : 0;
    peer.policyVersion = msg.policyVersion;
    peer.sessionId = msg.role === 'worker' ? `w${++this.seq.worker}` : `l${++this.seq.learner}`;
    peer.send({
      kind: Kind.Welcome,
      protocolVersion: PROTOCOL_VERSION,
      sessionId: peer.sessionId,
      role: msg.role,
      policyVersion: this.policyVersion,
      weightsVersion: this.store.latest?.version ?? null,
      ...epochField(this.epochs.current),
      ...(this.store.latest?.epoch ? { weightsEpoch: this.store.latest.epoch } : {}),
      heartbeatMs: this.opts.heartbeatMs,
      peerTimeoutMs: this.opts.peerTimeoutMs,
      leaseMs: this.opts.leaseMs,
      maxPayloadBytes: this.opts.maxPayloadBytes,
      serverTime: now,
    });
    this.opts.log('info', 'joined', { session: peer.sessionId, role: msg.role, name: msg.name, capacity: peer.capacity, remote: peer.remote });
    if (msg.role === 'worker') {
      this.workers.set(peer.sessionId, peer);
      // RunSpec before any weights (the worker builds its model from it); with no RunSpec yet the
      // worker gets weights only after the first one arrives (case Kind.RunSpec)
      if (this.runSpec) {
        peer.send(this.runSpec);
        this.fanout.attach(peer, held(peer)); // a late joiner gets the current weights at once
      }
    } else {
      this.learner = peer;
      this.deliver(); // results held while no learner was connected
    }
  }

  /**
   * A learner Hello: its epoch (epochs.ts: a stale session of the run is refused with 4007), then
   * the slot (learner-slot.ts). A new epoch drops the weights of the old one, and the learner's
   * version, lower when it resumed from an older checkpoint, becomes the truth. False: refused.
   */
  private learnerJoins(peer: Peer, msg: HelloMsg, now: number): boolean {
    const d = this.epochs.learner(msg);
    if (!d.ok) {
      this.opts.log('warn', 'learner_refused', { session: peer.sessionId, remote: peer.remote, reason: d.why });
      peer.send({ kind: Kind.Error, code: WireError.LearnerReplaced, message: d.why });
      peer.close(CloseCode.LearnerReplaced, 'a newer learner of the run started');
      return false;
    }
    if (!this.takeLearnerSlot(peer, msg.runKey ?? null, now)) return false;
    this.epochs.adopt(d.epoch);
    if (d.fresh) this.newEpoch(d.epoch, msg.policyVersion);
    return true;
  }

  /** learner-slot.ts decides; a stale session of the run is replaced (closed 4007). False: refused. */
  private takeLearnerSlot(peer: Peer, runKey: string | null, now: number): boolean {
    const d = this.slot.admit(this.learner, peer, runKey, now);
    if (!d.ok) {
      this.opts.log('warn', 'learner_refused', { session: peer.sessionId, remote: peer.remote, reason: d.why });
      peer.send({ kind: Kind.Error, code: WireError.LearnerTaken, message: d.why });
      peer.close(CloseCode.LearnerTaken, 'the learner slot is taken');
      return false;
    }
    if (d.replace !== null) {
      const old = d.replace;
      this.opts.log('warn', 'learner_replaced', { session: old.sessionId, by: peer.remote, quietMs: now - old.lastSeen });
      old.send({ kind: Kind.Error, code: WireError.LearnerReplaced, message: 'the run\'s learner reconnected; this stale session is closed' });
      old.close(CloseCode.LearnerReplaced, 'replaced by the run\'s learner');
      this.learner = null;
      this.ledger.learnerLost();
    }
    this.slot.bind(runKey);
    return true;
  }

  /**
   * A learner (re)started in a new epoch: weights of earlier epochs are never sent again, and its
   * version is the truth, lower than the newest seen when it resumed from an older checkpoint
   * (workers load it because its epoch is higher; until then they sample with what they hold).
   */
  private newEpoch(epoch: number, version: number | null): void {
    const back = version !== null && this.policyVersion !== null && version < this.policyVersion;
    this.opts.log(back ? 'warn' : 'info', 'epoch_started', { epoch, policyVersion: version, before: this.policyVersion, ...(back ? { rollback: true } : {}) });
    this.store.clear();
    this.droppedUpload = null;
    if (version === this.policyVersion) return;
    this.policyVersion = version;
    if (version !== null) for (const w of this.workers.values()) w.send({ kind: Kind.PolicyVersion, version });
  }

  message(peer: Peer, msg: Message, raw: Uint8Array, now: number): void {
    switch (msg.kind) {
      case Kind.Heartbeat:
        if (peer.role === 'worker') this.ledger.heartbeat(peer.sessionId, msg.leaseIds, now);
        return;
      case Kind.Error:
        limitedLog(this.opts.log, peer.logLimit, 'warn', 'peer_error', { session: peer.sessionId, code: clipText(msg.code, ECHO_CHARS), error: clipText(msg.message), ref: msg.ref === undefined ? undefined : clipText(msg.ref, ECHO_CHARS) });
        return;
      case Kind.Ready:
        peer.ready = true;
        peer.policyVersion = msg.policyVersion;
        this.schedule(now);
        return;
      case Kind.RunSpec: {
        const first = this.runSpec === null;
        this.runSpec = msg;
        this.opts.log('info', 'run_spec', { run: msg.spec.runId, task: msg.spec.task.name });
        for (const w of this.workers.values()) {
          w.send(msg);
          if (first) this.fanout.attach(w, held(w)); // workers that joined before any RunSpec
        }
        return;
      }
      case Kind.Enqueue:
        this.ledger.enqueue(msg.groups);
        this.schedule(now);
        return;
      case Kind.Groups: {
        const out = this.ledger.complete(peer.sessionId, peer.name, msg.leaseId, msg.results);
        if (out.staleLease) this.opts.log('info', 'stale_lease_result', { session: peer.sessionId, lease: msg.leaseId, groups: msg.results.length });
        for (const bad of out.invalid) peer.send({ kind: Kind.Error, code: WireError.InvalidResult, message: bad.message, ref: bad.groupId });
        for (const id of out.stray) {
          peer.send({ kind: Kind.Error, code: WireError.UnknownGroup, message: `group ${id} is not in lease ${msg.leaseId}`, ref: id });
        }
        this.deliver();
        this.schedule(now);
        return;
      }
      case Kind.GroupFailed: {
        // the worker's text travels on to the learner in GroupExhausted: bounded here
        const code = clipText(msg.code, ECHO_CHARS);
        const message = clipText(msg.message);
        const r = this.ledger.fail(peer.sessionId, msg.leaseId, msg.groupId, code, message);
        limitedLog(this.opts.log, peer.logLimit, 'warn', 'group_failed', { session: peer.sessionId, group: msg.groupId, code, error: message, outcome: r });
        if (r === 'stray') {
          peer.send({ kind: Kind.Error, code: WireError.UnknownGroup, message: `group ${msg.groupId} is not in lease ${msg.leaseId}`, ref: msg.groupId });
        }
        this.deliver();
        this.schedule(now);
        return;
      }
      case Kind.Verdict: {
        const from = this.ledger.resultSession(msg.groupId);
        if (this.ledger.verdict(msg.groupId, msg.reason) === 'unknown') {
          throw new GrpoError(WireError.UnknownGroup, `Verdict for group ${msg.groupId}, which awaits no verdict`);
        }
        if (from !== null && msg.code !== undefined) this.refused(from, msg.groupId, msg.code, msg.message ?? '');
        this.schedule(now);
        return;
      }
      case Kind.PolicyVersion:
        this.announce(msg.version);
        return;
      case Kind.WeightsBegin:
      case Kind.WeightsChunk:
      case Kind.WeightsEnd: {
        if (!this.currentEpochUpload(msg)) return;
        const done = this.store.accept(msg, raw);
        if (done !== null) {
          this.opts.log('info', 'weights_received', { version: done.version, bytes: done.totalBytes });
          this.announce(done.version);
          this.fanout.kick();
        }
        return;
      }
      case Kind.Hello:
      case Kind.Welcome:
      case Kind.Lease:
      case Kind.LeaseRevoked:
      case Kind.GroupResult:
      case Kind.GroupExhausted:
        throw new GrpoError(WireError.UnexpectedMessage, `kind ${msg.kind} is never sent to the coordinator`);
      default:
        assertNever(msg, 'message');
    }
  }

  closed(peer: Peer, code: number, reason: string): void {
    if (peer.role === null) return;
    this.opts.log('info', 'left', { session: peer.sessionId, role: peer.role, code, reason });
    if (peer.role === 'worker') {
      this.workers.delete(peer.sessionId);
      this.fanout.detach(peer.sessionId);
      const released = this.ledger.releaseWorker(peer.sessionId);
      if (released.length > 0) this.opts.log('info', 'leases_released', { session: peer.sessionId, leases: released.length });
      this.deliver(); // releasing may give groups up (maxRedispatches)
      this.schedule(Date.now());
    } else if (this.learner === peer) {
      this.learner = null;
      if (code === 1000) this.slot.release(); // it chose to leave: a finished or stopped run (learner-slot.ts)
      this.ledger.learnerLost();
    }
  }

  heartbeatDue(peer: Peer, now: number): void {
    const leaseIds = peer.role === 'worker' ? this.ledger.leasesOf(peer.sessionId) : [];
    peer.send({ kind: Kind.Heartbeat, time: now, leaseIds });
  }

  tick(now: number): void {
    const expired = this.ledger.expire(now);
    if (expired.length === 0) return;
    for (const l of expired) {
      this.opts.log('warn', 'lease_expired', { session: l.workerId, lease: l.leaseId });
      this.workers.get(l.workerId)?.send({ kind: Kind.LeaseRevoked, leaseId: l.leaseId, reason: 'expired' });
    }
    this.deliver();
    this.schedule(now);
  }

  /**
   * The learner refused a worker's result: the worker that sent it learns why (if it is still
   * connected; its session ended otherwise, and so did its lease).
   */
  private refused(sessionId: string, groupId: string, code: string, message: string): void {
    this.ledger.counters.refusedResults += 1;
    this.opts.log('warn', 'result_refused', { session: sessionId, group: groupId, code, error: message });
    this.workers.get(sessionId)?.send({ kind: Kind.Error, code, message: `the learner refused your result: ${message}`, ref: groupId });
  }

  /**
   * Only the current epoch's uploads are kept: a Begin of another epoch (a learner session that
   * has not yet seen its new Welcome) is refused with STALE_EPOCH and its chunks and End ignored.
   */
  private currentEpochUpload(msg: WeightsMsg): boolean {
    if (msg.kind === Kind.WeightsBegin) {
      const epoch = msg.epoch ?? 0;
      const current = this.epochs.current ?? 0;
      if (epoch === current) {
        this.droppedUpload = null;
        return true;
      }
      this.droppedUpload = msg.version;
      throw new GrpoError(WireError.StaleEpoch, `weights v${msg.version} of epoch ${epoch} refused: the run is in epoch ${current}; publish again under the epoch of your last Welcome`);
    }
    if (msg.version !== this.droppedUpload) return true;
    if (msg.kind === Kind.WeightsEnd) this.droppedUpload = null;
    return false;
  }

  /** The learner announced a version (or its weights completed): tell the workers if it is new. */
  private announce(version: number): void {
    if (this.policyVersion !== null && version <= this.policyVersion) return;
    this.policyVersion = version;
    for (const w of this.workers.values()) w.send({ kind: Kind.PolicyVersion, version });
  }

  /** Sends the learner every outbox entry it has not seen on this connection. */
  private deliver(): void {
    if (this.learner === null || !this.learner.open) return;
    for (const e of this.ledger.takeUndelivered()) this.learner.send(e.msg);
  }

  private schedule(now: number): void {
    const ready = [...this.workers.values()].filter((w) => w.ready && w.open);
    for (const [id, lease] of this.scheduler.run(ready.map((w) => ({ id: w.sessionId, capacity: w.capacity })), this.policyVersion, now)) {
      this.workers.get(id)?.send(lease);
    }
  }
}

/** The (epoch, version) a worker reported holding, for the fan-out; null before any weights. */
function held(peer: Peer): { epoch: number; version: number } | null {
  return peer.policyVersion === null ? null : { epoch: peer.epoch, version: peer.policyVersion };
}
