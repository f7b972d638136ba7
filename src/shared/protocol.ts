/**
 * The wire protocol between the coordinator, rollout workers and the learner: the single
 * source of truth for every message. Message kinds are an `as const` object with a derived
 * union type; each message has one interface; `Message` is their discriminated union on
 * `kind`. docs/protocol.md describes the same protocol for implementers in other languages;
 * change both together and bump PROTOCOL_VERSION on any incompatible change.
 *
 * This module is types and constants only: src/shared/codec.ts turns messages into frames
 * (and is the only module that touches msgpackr); src/shared/protocol-schema.ts validates
 * decoded messages.
 */

/** Bumped on every incompatible change; a Hello with another version is refused (4002). */
export const PROTOCOL_VERSION = 1;

export const Kind = {
  Hello: 1,
  Welcome: 2,
  Heartbeat: 3,
  Error: 4,
  Ready: 5,
  RunSpec: 6,
  Enqueue: 10,
  Lease: 11,
  LeaseRevoked: 12,
  Groups: 13,
  GroupFailed: 14,
  GroupResult: 15,
  GroupExhausted: 16,
  Verdict: 17,
  PolicyVersion: 20,
  WeightsBegin: 21,
  WeightsChunk: 22,
  WeightsEnd: 23,
} as const;
export type Kind = (typeof Kind)[keyof typeof Kind];

const KIND_NAMES = new Map<number, string>(Object.entries(Kind).map(([name, k]) => [k, name]));

/** `Lease`, or `kind 99` for a number that is no kind, for logs and error messages. */
export function kindName(kind: number): string {
  return KIND_NAMES.get(kind) ?? `kind ${kind}`;
}

export function isKind(kind: unknown): kind is Kind {
  return typeof kind === 'number' && KIND_NAMES.has(kind);
}

/**
 * Application WebSocket close codes (4000-4999 are reserved for applications by RFC 6455).
 * The coordinator also uses 1000 (normal) and the transport may report 1006 (connection lost);
 * an authentication failure never reaches WebSocket: the upgrade is answered with HTTP 401.
 */
export const CloseCode = {
  BadFrames: 4000, // too many malformed or unexpected frames from this peer; reconnecting is allowed
  HelloRequired: 4001, // the first message was not Hello, or none came within helloTimeoutMs
  ProtocolVersion: 4002, // Hello.protocolVersion is not PROTOCOL_VERSION; do not reconnect
  LearnerTaken: 4003, // another learner is connected; retry later
  ShuttingDown: 4004, // the coordinator is stopping; reconnect with backoff
  WeightsCorrupt: 4005, // sent by a worker whose weights failed their checksum; it reconnects
  RoleForbidden: 4006, // Hello.role is not a role the connection's token opens; do not reconnect
  LearnerReplaced: 4007, // the run's resumed learner took the slot from this (stale) learner session; do not reconnect
  EpochBehind: 4008, // to the learner: a worker holds weights of a newer resume epoch than it was given; reconnect asking for a new epoch
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

/** Close codes after which a client must not reconnect. */
export const FATAL_CLOSE_CODES: ReadonlySet<number> = new Set([CloseCode.ProtocolVersion, CloseCode.RoleForbidden, CloseCode.LearnerReplaced]);

/**
 * Error codes carried by Error messages (and thrown as GrpoError on either side). Receivers
 * branch on the code; the text is for humans.
 */
export const WireError = {
  BadFrame: 'GRPO_ERR_BAD_FRAME', // not decodable: not msgpack, not a map, bad chunk header
  UnknownKind: 'GRPO_ERR_UNKNOWN_KIND', // `kind` is not in the Kind table
  BadMessage: 'GRPO_ERR_BAD_MESSAGE', // a field is missing or has the wrong type/range
  UnexpectedMessage: 'GRPO_ERR_UNEXPECTED_MESSAGE', // a kind this role may not send, or a second Hello
  HelloRequired: 'GRPO_ERR_HELLO_REQUIRED',
  ProtocolVersion: 'GRPO_ERR_PROTOCOL_VERSION',
  LearnerTaken: 'GRPO_ERR_LEARNER_TAKEN',
  UnknownGroup: 'GRPO_ERR_UNKNOWN_GROUP', // a Verdict for a group that awaits none, a result for a group not in its lease
  InvalidResult: 'GRPO_ERR_INVALID_RESULT', // a partial or inconsistent group result; the group is retried
  WeightsSequence: 'GRPO_ERR_WEIGHTS_SEQUENCE', // chunk out of order, wrong size, End before all chunks
  WeightsChecksum: 'GRPO_ERR_WEIGHTS_CHECKSUM', // CRC-32 of the assembled bytes differs from WeightsBegin.checksum
  WeightsLayout: 'GRPO_ERR_WEIGHTS_LAYOUT', // a tensor table that does not fit, overlaps or is misaligned
  TooManyAttempts: 'GRPO_ERR_TOO_MANY_ATTEMPTS', // GroupExhausted: failed maxGroupAttempts times
  TooManyRedispatches: 'GRPO_ERR_TOO_MANY_REDISPATCHES', // GroupExhausted: its leases died maxRedispatches times
  Auth: 'GRPO_ERR_AUTH', // client side: the upgrade was refused with HTTP 401
  RoleForbidden: 'GRPO_ERR_ROLE_FORBIDDEN', // Hello as a role the connection's credential does not open (close 4006)
  LearnerReplaced: 'GRPO_ERR_LEARNER_REPLACED', // this learner session was replaced by the run's resumed learner (close 4007)
  WeightsBackwards: 'GRPO_ERR_WEIGHTS_BACKWARDS', // worker: weights whose (epoch, version) is below what it holds; refused, it keeps its own
  StaleEpoch: 'GRPO_ERR_STALE_EPOCH', // coordinator: weights from a learner in another resume epoch than the current one; dropped
} as const;
export type WireError = (typeof WireError)[keyof typeof WireError];

export type Role = 'worker' | 'learner';
export type WeightsEncoding = 'f32' | 'f16' | 'bf16';
export type FinishReason = 'stop' | 'length' | 'grammar';
export type VerdictReason = 'ok' | 'stale' | 'duplicate' | 'failed';

// ---------------------------------------------------------------------------------------------
// Session

/** Client -> coordinator, first message on every connection. */
export interface HelloMsg {
  kind: typeof Kind.Hello;
  protocolVersion: number;
  role: Role;
  name: string; // human-readable, e.g. `worker-3@host`; not unique
  capacity: number; // groups a worker samples at once (>= 1); 0 for the learner
  policyVersion: number | null; // the weights version the client already holds (reconnects), or null
  /**
   * Learner only, optional: the run key kept in its checkpoint (trainer_state.json). It proves the
   * learner is the run's own after a restart: the coordinator binds the learner slot to the first
   * key it sees, and a learner with that key may take the slot from a stale session of the run.
   */
  runKey?: string;
  /**
   * The resume epoch (docs/protocol.md, "Resume epochs"; absent = 0). Worker: the epoch of the
   * weights it holds (beside `policyVersion`). Learner: on a reconnect, the epoch its last Welcome
   * gave it; with `newEpoch`, the newest epoch its checkpoint recorded (absent for a new run).
   */
  epoch?: number;
  /** Learner only: true on the first Hello of a learner process (a start or restart) and after close 4008: assign a new epoch. */
  newEpoch?: boolean;
}

/** Coordinator -> client, answer to Hello. Timing values are what the client must use. */
export interface WelcomeMsg {
  kind: typeof Kind.Welcome;
  protocolVersion: number;
  sessionId: string; // unique per connection, e.g. `w7` or `l2`
  role: Role;
  policyVersion: number | null; // newest version announced by the learner (PolicyVersion or complete weights)
  weightsVersion: number | null; // newest complete weights version the coordinator holds
  /** The run's current resume epoch (absent = 0): the learner stamps it on every WeightsBegin. */
  epoch?: number;
  /** The epoch of `weightsVersion` (absent = 0): with it, (weightsEpoch, weightsVersion) names the weights held. */
  weightsEpoch?: number;
  heartbeatMs: number; // send a Heartbeat (and a WebSocket ping) this often
  peerTimeoutMs: number; // a peer silent for this long is disconnected
  leaseMs: number; // a lease not finished or heartbeated within this is re-dispatched
  maxPayloadBytes: number; // largest frame the coordinator accepts
  serverTime: number; // coordinator clock, ms since the Unix epoch
}

/** Both ways. From a worker, `leaseIds` are the leases it still works on (extends them). */
export interface HeartbeatMsg {
  kind: typeof Kind.Heartbeat;
  time: number; // sender clock, ms since the Unix epoch
  leaseIds: string[]; // worker -> coordinator: leases in progress; coordinator -> worker: leases it holds for you
}

/** Both ways. Never closes the connection by itself. */
export interface ErrorMsg {
  kind: typeof Kind.Error;
  code: string; // GRPO_ERR_..., see WireError
  message: string;
  ref?: string; // the groupId, leaseId or version the error is about, when there is one
}

/** Worker -> coordinator: weights of `policyVersion` are loaded; leases may start. Resent on every swap. */
export interface ReadyMsg {
  kind: typeof Kind.Ready;
  policyVersion: number;
}

/**
 * What every worker must know to sample and score for this run, apart from the weights: the model
 * architecture (Hugging Face config.json fields), the tokenizer (tokenizer.json contents), the task
 * whose reward functions score completions, and the sampling settings. The learner sends it after
 * Welcome (and again if it changes); the coordinator keeps the newest and sends it to every worker
 * right after Welcome, before any weights, so a worker needs nothing but the coordinator's address.
 */
export interface RunSpec {
  runId: string; // changes when the learner restarts with another run
  model: Record<string, unknown>; // ModelConfig (config.json of a supported model_type)
  tokenizer: unknown; // tokenizer.json contents
  /**
   * The learner's special token ids: a prompt is [bosId] + encode(prompt) (no BOS when null; the
   * tokenizer's post-processor is not applied), a completion ends at eosId or at any of `stopIds`
   * (eosId first; absent from older learners = [eosId]) (docs/protocol.md, "Tokens").
   */
  specialTokens: { bosId: number | null; eosId: number; padId: number; stopIds?: number[] };
  /**
   * `jsOnly`: scoring needs JavaScript (the task is a module path, or the run has a reward module),
   * so only a worker that can import JS/TS modules may sample for the run.
   */
  task: { name: string; seed: number; options: Record<string, unknown>; jsOnly: boolean };
  rewardWeights: Record<string, number>; // config reward_weights (task defaults apply to the rest)
  sampling: { temperature: number; topK: number; topP: number; maxNewTokens: number; seed: number };
  rewards: {
    timeoutMs: number;
    retries: number;
    module?: string | null;
    remote?: RemoteRewardSpec | null;
    /** The run's active rewards (resolved weight not 0): every completion must carry each of them. */
    functions: RewardFunctionSpec[];
  };
}

/** One reward every completion of the run is scored with (docs/protocol.md, "Scoring"). */
export interface RewardFunctionSpec {
  name: string; // key in Completion.rewards
  weight: number; // resolved weight in the learner's weighted sum (never 0 here)
  scope: 'completion' | 'group'; // one call per completion, or one per group (sees all its completions)
  source: 'task' | 'module' | 'remote'; // the task's own, the reward module's (JS only), the remote judge's
}

/** The remote reward of a run (config remote_reward_*): a judge served over HTTP. */
export interface RemoteRewardSpec {
  url: string;
  name: string;
  weight: number; // default weight; rewardWeights may override it by name
  timeoutMs: number; // per request
  retries: number; // retries of a failed request
  backoffMs: number; // wait before the first retry, doubling
  maxInFlight: number; // requests in flight per worker
}

/** Learner -> coordinator, coordinator -> workers. */
export interface RunSpecMsg {
  kind: typeof Kind.RunSpec;
  spec: RunSpec;
}

// ---------------------------------------------------------------------------------------------
// Work accounting

/** One prompt to sample `groupSize` completions for. The learner owns the dataset and ids. */
export interface GroupSpec {
  groupId: string; // unique for the whole run; a re-queued prompt gets a new id
  promptIndex: number; // dataset position, for the learner's cursor
  prompt: string;
  meta: unknown; // anything msgpack can carry (e.g. the expected answer for the reward)
  groupSize: number; // completions to sample
  /** Curriculum level the problem was generated at (absent without a curriculum). */
  level?: number;
  /**
   * The task options the problem was generated with, when a curriculum level changed them from
   * the RunSpec's: the worker samples this group under the grammar of the task with these options.
   */
  taskOptions?: Record<string, unknown>;
  /**
   * Deterministic mode (config `deterministic`): this group's sampling seed (u32), derived by the
   * learner from the run seed, the step and the prompt. The worker samples the group's rows from
   * it alone, in a sampling call of their own, so the completions do not depend on which worker
   * samples the group or with which other groups.
   */
  seed?: number;
}

/** Learner -> coordinator. Idempotent per groupId: an id the coordinator knows is ignored. */
export interface EnqueueMsg {
  kind: typeof Kind.Enqueue;
  groups: GroupSpec[];
}

/** Coordinator -> worker. */
export interface LeaseMsg {
  kind: typeof Kind.Lease;
  leaseId: string;
  policyVersion: number | null; // the newest version the learner published; sample with it when you have it
  deadline: number; // coordinator clock, ms since the epoch (informative; use ttlMs)
  ttlMs: number; // the lease expires this long after it was sent unless heartbeated
  groups: GroupSpec[];
}

/** Coordinator -> worker: the lease expired; results for it will be ignored. */
export interface LeaseRevokedMsg {
  kind: typeof Kind.LeaseRevoked;
  leaseId: string;
  reason: 'expired';
}

export interface Completion {
  tokens: number[]; // generated token ids, stop token included when hit
  /** Per token, behaviour log-probability (renormalised over `allowed[t]` where that is a set); same length as tokens. */
  logprobs: number[];
  /**
   * Sampled under a grammar: per token, the allowed ids it was drawn from (ascending), or null
   * where every token was allowed. Absent without a grammar. The learner renormalises its
   * log-probabilities over the same sets.
   */
  allowed?: (number[] | null)[];
  text: string; // decoded completion
  rewards: Record<string, number | null>; // per reward function; null = not applicable
  finishReason: FinishReason;
}

export interface RewardErrorInfo {
  reward: string; // reward function name
  code: string; // GRPO_ERR_...
  message: string;
}

/** One finished group: exactly `groupSize` completions of one prompt. */
export interface GroupRollout {
  groupId: string;
  policyVersion: number; // the weights version that sampled every completion of this group
  epoch?: number; // the resume epoch of those weights (absent = 0); the learner refuses other epochs as stale
  promptTokens: number[]; // prompt token ids as the worker fed them to the model
  completions: Completion[];
  rewardErrors?: RewardErrorInfo[]; // errors that were retried and then succeeded (informative)
}

/** Worker -> coordinator: finished groups of one lease (all at once or in several messages). */
export interface GroupsMsg {
  kind: typeof Kind.Groups;
  leaseId: string;
  results: GroupRollout[];
}

/** Worker -> coordinator: this group cannot be finished (e.g. reward errors after retries). */
export interface GroupFailedMsg {
  kind: typeof Kind.GroupFailed;
  leaseId: string;
  groupId: string;
  code: string;
  message: string;
}

/** Coordinator -> learner: the first valid result of a group. Answer with a Verdict. */
export interface GroupResultMsg {
  kind: typeof Kind.GroupResult;
  sessionId: string; // the worker's session
  workerName: string;
  leaseId: string;
  attempts: number; // leases of this group before the one that finished it (0 = first try)
  group: GroupRollout;
}

/** Coordinator -> learner: a group given up after too many failures. Answer with Verdict 'failed'. */
export interface GroupExhaustedMsg {
  kind: typeof Kind.GroupExhausted;
  groupId: string;
  promptIndex: number;
  failures: number; // GroupFailed reports and invalid results
  redispatches: number; // leases that expired or died with their worker
  code: string; // TooManyAttempts or TooManyRedispatches
  message: string; // includes the last worker error
}

/** Learner -> coordinator: what became of a GroupResult or GroupExhausted. */
export interface VerdictMsg {
  kind: typeof Kind.Verdict;
  groupId: string;
  admitted: boolean; // true exactly when reason is 'ok'
  reason: VerdictReason;
  /**
   * Only with reason 'failed' for a GroupResult the learner refused (reward names not the run's,
   * prompt tokens not the ones it leased, a group it cannot train): why, as a coded error. The
   * coordinator forwards it to the worker that sent the result as an Error whose `ref` is the group id.
   */
  code?: string;
  message?: string; // with `code`: for humans, names the group and the reason (at most VERDICT_MESSAGE_CHARS)
}

/** Longest Verdict.message the coordinator accepts (the learner shortens longer ones). */
export const VERDICT_MESSAGE_CHARS = 2_000;

// ---------------------------------------------------------------------------------------------
// Policy versions and weights

/** Learner -> coordinator (announce), coordinator -> workers (broadcast on change). */
export interface PolicyVersionMsg {
  kind: typeof Kind.PolicyVersion;
  version: number;
}

export interface TensorEntry {
  name: string; // Hugging Face parameter name
  shape: number[];
  byteOffset: number; // into the version's payload; a multiple of 8
  byteLength: number; // product(shape) * bytes per element of the encoding
}

/** Starts one weights version; its payload follows as chunks 0..chunkCount-1, then WeightsEnd. */
/**
 * LoRA payloads (docs/protocol.md, "LoRA adapters"). `base === version`: a LoRA base: the base
 * weights by HF name plus the adapters by PEFT name (`...lora_A.weight`, `...lora_B.weight`); the
 * worker keeps the base and samples with base + (alpha / r) B A. `base < version`: the adapters
 * alone, for the base sent as version `base` (its fingerprint must match the one the worker holds).
 */
export interface AdapterInfo {
  base: number; // version of the LoRA base payload these adapters apply to
  baseFingerprint: string; // sha256-based fingerprint of the base weights (src/model/lora.ts)
  r: number; // rank
  alpha: number; // the update is (alpha / r) B A
}

export interface WeightsBeginMsg {
  kind: typeof Kind.WeightsBegin;
  version: number; // 0 <= version < 2^32
  /**
   * The learner's resume epoch (absent = 0). A worker loads weights only when (epoch, version) is
   * lexicographically above what it holds; the coordinator keeps only the current epoch's.
   */
  epoch?: number;
  encoding: WeightsEncoding; // element type of every tensor, little-endian
  adapter?: AdapterInfo; // absent: a full payload, every weight of the policy (the original form)
  tensors: TensorEntry[];
  totalBytes: number; // payload length, padding included
  chunkBytes: number; // size of every chunk but the last; a multiple of 8
  chunkCount: number; // ceil(totalBytes / chunkBytes)
  checksum: number; // CRC-32 (IEEE 802.3, as zlib) of the whole payload, unsigned
}

/** Binary frame (see codec.ts / docs/protocol.md): 16-byte header then the payload bytes. */
export interface WeightsChunkMsg {
  kind: typeof Kind.WeightsChunk;
  version: number;
  index: number; // 0-based; chunk i holds payload bytes [i * chunkBytes, min(total, (i + 1) * chunkBytes))
  bytes: Uint8Array;
}

export interface WeightsEndMsg {
  kind: typeof Kind.WeightsEnd;
  version: number;
}

export type Message =
  | HelloMsg
  | WelcomeMsg
  | HeartbeatMsg
  | ErrorMsg
  | ReadyMsg
  | RunSpecMsg
  | EnqueueMsg
  | LeaseMsg
  | LeaseRevokedMsg
  | GroupsMsg
  | GroupFailedMsg
  | GroupResultMsg
  | GroupExhaustedMsg
  | VerdictMsg
  | PolicyVersionMsg
  | WeightsBeginMsg
  | WeightsChunkMsg
  | WeightsEndMsg;

export type MessageOf<K extends Kind> = Extract<Message, { kind: K }>;
export type WeightsMsg = WeightsBeginMsg | WeightsChunkMsg | WeightsEndMsg;

/** What each role may send to the coordinator; anything else is answered with UnexpectedMessage. */
export const ACCEPTED_FROM: Readonly<Record<Role, ReadonlySet<Kind>>> = {
  worker: new Set<Kind>([Kind.Heartbeat, Kind.Error, Kind.Ready, Kind.Groups, Kind.GroupFailed]),
  learner: new Set<Kind>([
    Kind.Heartbeat,
    Kind.Error,
    Kind.RunSpec,
    Kind.Enqueue,
    Kind.Verdict,
    Kind.PolicyVersion,
    Kind.WeightsBegin,
    Kind.WeightsChunk,
    Kind.WeightsEnd,
  ]),
};

/**
 * Defaults of every protocol and coordinator knob, with units. The global config maps onto
 * these (heartbeat_ms -> heartbeatMs, lease_ms -> leaseMs, ...); callers spread their values
 * over this object.
 */
export const PROTOCOL_DEFAULTS = Object.freeze({
  heartbeatMs: 2_000, // 2 s: Heartbeat message and WebSocket ping period, both ways
  peerTimeoutMs: 20_000, // 20 s: a peer that sends nothing (not even a pong) this long is terminated
  helloTimeoutMs: 10_000, // 10 s: a connection that has not said Hello by then is closed (4001)
  leaseMs: 60_000, // 60 s: lease lifetime, extended by each worker Heartbeat that lists it
  sweepMs: 250, // 250 ms: how often the coordinator checks lease deadlines and peer timeouts
  maxPayloadBytes: 64 * 1024 * 1024, // 64 MiB: largest WebSocket message either side accepts
  weightsChunkBytes: 1024 * 1024, // 1 MiB: payload bytes per WeightsChunk frame
  highWaterMarkBytes: 4 * 1024 * 1024, // 4 MiB: per-socket bufferedAmount above which weight chunks wait
  maxWeightsBytes: 2 * 1024 * 1024 * 1024, // 2 GiB: largest weights payload a receiver accepts
  maxGroupAttempts: 3, // a group reported failed (or invalid) this often is given up (GroupExhausted)
  maxRedispatches: 20, // a group whose leases expired or died this often is given up (poison prompt)
  maxHeldResults: 512, // groups leased or finished but not yet judged by the learner; leasing pauses at this bound
  maxBadFrames: 16, // malformed or unexpected frames from one connection before it is closed (4000)
  maxBufferedBytes: 256 * 1024 * 1024, // 256 MiB: bytes waiting in one peer's send buffer before the coordinator terminates it (it is not reading)
  reconnectInitialMs: 250, // 250 ms: first client reconnect delay; doubles per failure
  reconnectMaxMs: 10_000, // 10 s: ceiling of the reconnect delay
});
export type ProtocolDefaults = typeof PROTOCOL_DEFAULTS;

/** Structured log sink shared by the coordinator and clients: one line per event. */
export type ProtocolLogger = (
  level: 'debug' | 'info' | 'warn' | 'error',
  event: string,
  fields?: Record<string, unknown>,
) => void;

/** Writes `{"t":..., "level":..., "event":..., ...fields}` lines to stderr at info and above. */
export const stderrLogger: ProtocolLogger = (level, event, fields) => {
  if (level === 'debug') return;
  process.stderr.write(`${JSON.stringify({ t: new Date().toISOString(), level, event, ...fields })}\n`);
};

export const silentLogger: ProtocolLogger = () => {};
