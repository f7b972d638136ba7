/**
 * Where ProtocolClient's received messages and lifecycle events go: typed handlers per message
 * kind (`on`, `next`), listeners per client event (`onEvent`), and the count of messages nobody
 * handled. ProtocolClient (./ws-client.ts) owns the connection and calls dispatch() for every
 * decoded message after acting on the kinds it consumes itself.
 */
import { GrpoError } from './errors.js';
import type { NamedHostTensors } from './host-tensor.js';
import { Kind, kindName } from './protocol.js';
import type { AdapterInfo, Message, MessageOf, ProtocolLogger, Role, WeightsEncoding, WelcomeMsg } from './protocol.js';

export interface ReceivedWeights {
  version: number;
  epoch: number; // resume epoch (0 when the Begin had none)
  encoding: WeightsEncoding;
  adapter?: AdapterInfo; // LoRA payload (protocol.ts AdapterInfo); absent: every weight
  tensors: NamedHostTensors;
}

export interface ClientEvents {
  welcome: (msg: WelcomeMsg) => void; // every (re)connection
  weights: (w: ReceivedWeights) => void; // worker: a verified version arrived
  disconnect: (info: { code: number; reason: string }) => void; // leases are gone; a reconnect follows unless closed
  error: (err: GrpoError) => void; // a problem the client recovered from (bad frame, weights checksum, ...)
  fatal: (err: GrpoError) => void; // the client stopped: refused token, protocol version
}

type Handler = (msg: Message) => void;

/**
 * Kinds the client acts on itself, so no handler is needed: Welcome (session), Heartbeat
 * (liveness: every frame resets the peer timeout), Error (logged), the weights frames
 * (assembled into the `weights` event), and PolicyVersion (an announcement: the weights frames
 * that follow carry the version). Any other kind with no handler is logged and counted.
 */
const CONSUMED_KINDS: ReadonlySet<number> = new Set([
  Kind.Welcome,
  Kind.Heartbeat,
  Kind.Error,
  Kind.PolicyVersion,
  Kind.WeightsBegin,
  Kind.WeightsChunk,
  Kind.WeightsEnd,
]);

export class MessageDispatch {
  private readonly handlers = new Map<number, Set<Handler>>();
  private readonly unhandled = new Map<string, number>(); // kind name -> messages no one handled
  private readonly events = new Map<keyof ClientEvents, Set<ClientEvents[keyof ClientEvents]>>();

  constructor(
    private readonly log: ProtocolLogger,
    private readonly role: Role,
  ) {}

  /** Subscribes to one message kind; returns the unsubscribe function. */
  on<K extends Kind>(kind: K, handler: (msg: MessageOf<K>) => void): () => void {
    const set = this.handlers.get(kind) ?? new Set<Handler>();
    this.handlers.set(kind, set);
    set.add(handler as Handler);
    return () => set.delete(handler as Handler);
  }

  onEvent<E extends keyof ClientEvents>(event: E, handler: ClientEvents[E]): () => void {
    const set = this.events.get(event) ?? new Set();
    this.events.set(event, set);
    set.add(handler);
    return () => set.delete(handler);
  }

  /** The next message of `kind` that satisfies `pred`; rejects after `timeoutMs`. */
  next<K extends Kind>(kind: K, timeoutMs = 10_000, pred: (msg: MessageOf<K>) => boolean = () => true): Promise<MessageOf<K>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new GrpoError('GRPO_ERR_TIMEOUT', `no ${kindName(kind)} within ${timeoutMs} ms`));
      }, timeoutMs);
      const off = this.on(kind, (msg) => {
        if (!pred(msg)) return;
        clearTimeout(timer);
        off();
        resolve(msg);
      });
    });
  }

  /**
   * Messages received that nothing handled, by kind name (a kind the client does not consume
   * itself and no `on()` handler was subscribed to when it arrived).
   */
  unhandledMessages(): Record<string, number> {
    return Object.fromEntries(this.unhandled);
  }

  /** Calls the listeners of `event`; one that throws is logged and the others still run. */
  emit<E extends keyof ClientEvents>(event: E, ...args: Parameters<ClientEvents[E]>): void {
    for (const h of this.events.get(event) ?? []) {
      try {
        (h as (...a: Parameters<ClientEvents[E]>) => void)(...args);
      } catch (err) {
        this.log('error', 'client_handler_failed', { event, error: String(err) });
      }
    }
  }

  /** Hands `msg` to the handlers of its kind; counts it when nobody handles it and the client did not consume it. */
  dispatch(msg: Message): void {
    const handlers = this.handlers.get(msg.kind);
    if ((handlers === undefined || handlers.size === 0) && !CONSUMED_KINDS.has(msg.kind)) this.noteUnhandled(msg.kind);
    for (const h of handlers ?? []) {
      try {
        h(msg);
      } catch (err) {
        this.log('error', 'client_handler_failed', { kind: kindName(msg.kind), error: String(err) });
      }
    }
  }

  /** Counts a message nobody handled; the first of each kind is a warning, the rest debug lines. */
  private noteUnhandled(kind: number): void {
    const name = kindName(kind);
    const count = (this.unhandled.get(name) ?? 0) + 1;
    this.unhandled.set(name, count);
    this.log(count === 1 ? 'warn' : 'debug', 'client_unhandled_message', { kind: name, count, role: this.role });
  }
}
