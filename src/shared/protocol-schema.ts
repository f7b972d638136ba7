/**
 * Runtime validation of decoded messages: one zod schema per message kind that travels as
 * msgpack (WeightsChunk travels as a binary chunk frame and is checked by the codec). Unknown
 * fields are stripped, so a newer peer may add optional fields; missing or mistyped fields are
 * a BadMessage error naming the field's path. The compile-time checks at the bottom keep these
 * schemas and the interfaces of protocol.ts in step.
 */
import { z } from 'zod';
import { clipText, ECHO_CHARS, echoValue } from './clip.js';
import { GrpoError } from './errors.js';
import { Kind, kindName, VERDICT_MESSAGE_CHARS, WireError } from './protocol.js';
import type { Message } from './protocol.js';

const U32_MAX = 0xffff_ffff;
const id = () => z.string().min(1).max(256);
const count = () => z.number().int().nonnegative();
const version = () => z.number().int().min(0).max(U32_MAX);
const errorCode = () => z.string().regex(/^GRPO_ERR_[A-Z0-9_]+$/);
const role = z.enum(['worker', 'learner']);

const groupSpec = z.object({
  groupId: id(),
  promptIndex: count(),
  prompt: z.string(),
  meta: z.unknown(),
  groupSize: z.number().int().min(1),
  level: count().optional(),
  taskOptions: z.record(z.string(), z.unknown()).optional(),
  seed: version().optional(),
});

const completion = z.object({
  tokens: z.array(count()),
  logprobs: z.array(z.number()), // zod numbers are finite: NaN and Infinity are rejected
  allowed: z.array(z.array(count()).nullable()).optional(),
  text: z.string(),
  rewards: z.record(z.string(), z.number().nullable()),
  finishReason: z.enum(['stop', 'length', 'grammar']),
});

const groupRollout = z.object({
  groupId: id(),
  policyVersion: version(),
  epoch: version().optional(),
  promptTokens: z.array(count()),
  completions: z.array(completion),
  rewardErrors: z.array(z.object({ reward: z.string(), code: z.string(), message: z.string() })).optional(),
});

const tensorEntry = z.object({
  name: z.string().min(1),
  shape: z.array(count()),
  byteOffset: count(),
  byteLength: count(),
});

const SCHEMAS = {
  [Kind.Hello]: z.object({
    kind: z.literal(Kind.Hello),
    protocolVersion: count(),
    role,
    name: z.string().max(256),
    capacity: count(),
    policyVersion: version().nullable(),
    runKey: z.string().min(16).max(128).optional(),
    epoch: version().optional(),
    newEpoch: z.boolean().optional(),
  }),
  [Kind.Welcome]: z.object({
    kind: z.literal(Kind.Welcome),
    protocolVersion: count(),
    sessionId: id(),
    role,
    policyVersion: version().nullable(),
    weightsVersion: version().nullable(),
    epoch: version().optional(),
    weightsEpoch: version().optional(),
    heartbeatMs: z.number().positive(),
    peerTimeoutMs: z.number().positive(),
    leaseMs: z.number().positive(),
    maxPayloadBytes: z.number().int().positive(),
    serverTime: z.number(),
  }),
  [Kind.Heartbeat]: z.object({ kind: z.literal(Kind.Heartbeat), time: z.number(), leaseIds: z.array(id()) }),
  [Kind.Error]: z.object({
    kind: z.literal(Kind.Error),
    code: errorCode(),
    message: z.string(),
    ref: z.string().optional(),
  }),
  [Kind.Ready]: z.object({ kind: z.literal(Kind.Ready), policyVersion: version() }),
  [Kind.RunSpec]: z.object({
    kind: z.literal(Kind.RunSpec),
    spec: z.object({
      runId: id(),
      model: z.record(z.string(), z.unknown()),
      tokenizer: z.unknown(),
      specialTokens: z.object({ bosId: count().nullable(), eosId: count(), padId: count(), stopIds: z.array(count()).min(1).optional() }),
      task: z.object({ name: z.string().min(1), seed: z.number().int(), options: z.record(z.string(), z.unknown()), jsOnly: z.boolean() }),
      rewardWeights: z.record(z.string(), z.number()),
      sampling: z.object({
        temperature: z.number().nonnegative(),
        topK: count(),
        topP: z.number().gt(0).max(1),
        maxNewTokens: z.number().int().positive(),
        seed: z.number().int(),
      }),
      rewards: z.object({
        timeoutMs: z.number().positive(),
        retries: count(),
        module: z.string().min(1).nullable().optional(),
        remote: z
          .object({
            url: z.string().min(1),
            name: z.string().min(1),
            weight: z.number(),
            timeoutMs: z.number().int().positive(),
            retries: count(),
            backoffMs: count(),
            maxInFlight: z.number().int().positive(),
          })
          .nullable()
          .optional(),
        functions: z.array(
          z.object({
            name: z.string().min(1),
            weight: z.number(),
            scope: z.enum(['completion', 'group']),
            source: z.enum(['task', 'module', 'remote']),
          }),
        ),
      }),
    }),
  }),
  [Kind.Enqueue]: z.object({ kind: z.literal(Kind.Enqueue), groups: z.array(groupSpec) }),
  [Kind.Lease]: z.object({
    kind: z.literal(Kind.Lease),
    leaseId: id(),
    policyVersion: version().nullable(),
    deadline: z.number(),
    ttlMs: z.number().positive(),
    groups: z.array(groupSpec),
  }),
  [Kind.LeaseRevoked]: z.object({ kind: z.literal(Kind.LeaseRevoked), leaseId: id(), reason: z.literal('expired') }),
  [Kind.Groups]: z.object({ kind: z.literal(Kind.Groups), leaseId: id(), results: z.array(groupRollout) }),
  [Kind.GroupFailed]: z.object({
    kind: z.literal(Kind.GroupFailed),
    leaseId: id(),
    groupId: id(),
    code: errorCode(),
    message: z.string(),
  }),
  [Kind.GroupResult]: z.object({
    kind: z.literal(Kind.GroupResult),
    sessionId: id(),
    workerName: z.string(),
    leaseId: id(),
    attempts: count(),
    group: groupRollout,
  }),
  [Kind.GroupExhausted]: z.object({
    kind: z.literal(Kind.GroupExhausted),
    groupId: id(),
    promptIndex: count(),
    failures: count(),
    redispatches: count(),
    code: errorCode(),
    message: z.string(),
  }),
  [Kind.Verdict]: z
    .object({
      kind: z.literal(Kind.Verdict),
      groupId: id(),
      admitted: z.boolean(),
      reason: z.enum(['ok', 'stale', 'duplicate', 'failed']),
      code: errorCode().optional(),
      message: z.string().max(VERDICT_MESSAGE_CHARS).optional(),
    })
    .refine((v) => v.admitted === (v.reason === 'ok'), { message: "admitted must be true exactly when reason is 'ok'" })
    .refine((v) => v.code === undefined || v.reason === 'failed', { message: "code is only sent with reason 'failed'", path: ['code'] })
    .refine((v) => (v.code === undefined) === (v.message === undefined), { message: 'code and message come together', path: ['message'] }),
  [Kind.PolicyVersion]: z.object({ kind: z.literal(Kind.PolicyVersion), version: version() }),
  [Kind.WeightsBegin]: z.object({
    kind: z.literal(Kind.WeightsBegin),
    version: version(),
    epoch: version().optional(),
    encoding: z.enum(['f32', 'f16', 'bf16']),
    adapter: z
      .object({ base: version(), baseFingerprint: z.string().min(1).max(128), r: z.number().int().positive(), alpha: z.number().positive() })
      .refine((a) => a.base >= 0, { message: 'adapter.base must be a version' })
      .optional(),
    tensors: z.array(tensorEntry),
    totalBytes: count(),
    chunkBytes: z.number().int().positive().multipleOf(8),
    chunkCount: count(),
    checksum: z.number().int().min(0).max(U32_MAX),
  }),
  [Kind.WeightsEnd]: z.object({ kind: z.literal(Kind.WeightsEnd), version: version() }),
} as const;

type MsgpackKind = keyof typeof SCHEMAS;

/**
 * Checks a decoded msgpack map against the schema of its kind and returns the typed message.
 * Throws GrpoError UnknownKind or BadMessage (with the failing field's path).
 */
export function validateMessage(value: Record<string, unknown>): Message {
  const kind = value.kind;
  if (typeof kind !== 'number' || !Object.hasOwn(SCHEMAS, kind)) {
    const what = kind === Kind.WeightsChunk ? 'WeightsChunk must travel as a binary chunk frame' : 'not a message kind';
    throw new GrpoError(WireError.UnknownKind, `kind ${echoValue(kind)}: ${what}; see docs/protocol.md`);
  }
  const r = SCHEMAS[kind as MsgpackKind].safeParse(value);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue.path.length > 0 ? issue.path.join('.') : '(message)';
    throw new GrpoError(WireError.BadMessage, clipText(`${kindName(kind)}.${clipText(path, ECHO_CHARS)}: ${issue.message}`));
  }
  return r.data as Message;
}

// Compile-time agreement between the schemas and the interfaces in protocol.ts: each schema's
// output is exactly its message type (a mismatch fails `tsc`).
type Exact<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
type SchemaOut<K extends MsgpackKind> = z.output<(typeof SCHEMAS)[K]>;
type AllExact = { [K in MsgpackKind]: Exact<SchemaOut<K>, Extract<Message, { kind: K }>> };
const schemasMatchInterfaces: false extends AllExact[MsgpackKind] ? never : true = true;
void schemasMatchInterfaces;
