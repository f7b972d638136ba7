/** Test helpers: a coordinator on port 0 and a raw `ws` peer that records every decoded message. */
import { WebSocket } from 'ws';
import { startCoordinator } from '../../src/coordinator/main.js';
import type { CoordinatorHandle, CoordinatorOptions } from '../../src/coordinator/main.js';
import { decodeMessage, encodeMessage } from '../../src/shared/codec.js';
import { Kind, PROTOCOL_VERSION, silentLogger } from '../../src/shared/protocol.js';
import { SAMPLES } from '../shared/protocol-samples.js';
import type { GroupRollout, GroupSpec, Message, MessageOf, Role, WelcomeMsg } from '../../src/shared/protocol.js';

export function startTestCoordinator(opts: Partial<CoordinatorOptions> = {}): Promise<CoordinatorHandle> {
  return startCoordinator({ port: 0, token: null, log: silentLogger, ...opts });
}

export class RawPeer {
  readonly received: Message[] = [];
  private readonly waiters = new Set<() => void>();
  private taken = new WeakSet<Message>();
  readonly closed: Promise<{ code: number; reason: string }>;

  private constructor(readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      this.received.push(decodeMessage(new Uint8Array(data)));
      for (const w of [...this.waiters]) w();
    });
    this.closed = new Promise((resolve) => ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })));
  }

  static connect(url: string, token: string | null = null, autoPong = true): Promise<RawPeer> {
    const ws = new WebSocket(url, { headers: token === null ? {} : { authorization: `Bearer ${token}` }, autoPong });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new RawPeer(ws)));
      ws.once('error', reject);
    });
  }

  /** Connects and says Hello; resolves with the Welcome. */
  static async join(
    url: string,
    role: Role,
    opts: { capacity?: number; token?: string | null; policyVersion?: number | null; name?: string; autoPong?: boolean; runSpec?: boolean; runKey?: string; epoch?: number; newEpoch?: boolean } = {},
  ) {
    const peer = await RawPeer.connect(url, opts.token ?? null, opts.autoPong ?? true);
    peer.send({
      kind: Kind.Hello,
      protocolVersion: PROTOCOL_VERSION,
      role,
      name: opts.name ?? role,
      capacity: role === 'worker' ? (opts.capacity ?? 1) : 0,
      policyVersion: opts.policyVersion ?? null,
      ...(opts.runKey === undefined ? {} : { runKey: opts.runKey }),
      ...(opts.epoch === undefined ? {} : { epoch: opts.epoch }),
      ...(opts.newEpoch === undefined ? {} : { newEpoch: opts.newEpoch }),
    });
    const welcome: WelcomeMsg = await peer.next(Kind.Welcome);
    // a learner sends its RunSpec after Welcome (the coordinator gives workers weights only after one)
    if (role === 'learner' && opts.runSpec !== false) peer.send(SAMPLES[Kind.RunSpec]);
    return { peer, welcome };
  }

  send(msg: Message): void {
    this.ws.send(encodeMessage(msg));
  }

  sendRaw(bytes: Uint8Array | string): void {
    this.ws.send(bytes);
  }

  /** The first message of `kind` (matching `pred`) not returned before; waits for it. */
  next<K extends Kind>(kind: K, pred: (m: MessageOf<K>) => boolean = () => true, timeoutMs = 5_000): Promise<MessageOf<K>> {
    return new Promise((resolve, reject) => {
      const look = (): boolean => {
        const m = this.received.find((x) => x.kind === kind && !this.taken.has(x) && pred(x as MessageOf<K>));
        if (m === undefined) return false;
        this.taken.add(m);
        resolve(m as MessageOf<K>);
        return true;
      };
      if (look()) return;
      const timer = setTimeout(() => {
        this.waiters.delete(check);
        reject(new Error(`no kind ${kind} within ${timeoutMs} ms; got ${this.received.map((x) => x.kind).join(',')}`));
      }, timeoutMs);
      const check = (): void => {
        if (look()) {
          clearTimeout(timer);
          this.waiters.delete(check);
        }
      };
      this.waiters.add(check);
    });
  }

  all<K extends Kind>(kind: K): MessageOf<K>[] {
    return this.received.filter((m) => m.kind === kind) as MessageOf<K>[];
  }

  close(): Promise<{ code: number; reason: string }> {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000);
    return this.closed;
  }
}

export const spec = (id: string, groupSize = 2): GroupSpec => ({ groupId: id, promptIndex: 0, prompt: `prompt ${id}`, meta: { id }, groupSize });

export function rolloutFor(s: GroupSpec, policyVersion = 0, text = 'ok'): GroupRollout {
  return {
    groupId: s.groupId,
    policyVersion,
    promptTokens: [1, 2],
    completions: Array.from({ length: s.groupSize }, (_, i) => ({
      tokens: [3 + i, 4],
      logprobs: [-0.5, -1],
      text,
      rewards: { correct: i % 2 },
      finishReason: 'stop' as const,
    })),
  };
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` every 10 ms until it holds (for effects with no message to wait on). */
export async function until(cond: () => boolean, timeoutMs = 5_000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`${what} not met within ${timeoutMs} ms`);
    await sleep(10);
  }
}
