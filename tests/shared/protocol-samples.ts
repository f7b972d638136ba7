/** One valid message of every kind, for codec and protocol tests. */
import { Kind } from '../../src/shared/protocol.js';
import type { GroupRollout, GroupSpec, Message } from '../../src/shared/protocol.js';

export const spec: GroupSpec = { groupId: 'g1', promptIndex: 4, prompt: '2+3=', meta: { answer: 5, tags: ['a'] }, groupSize: 2 };

export const rollout: GroupRollout = {
  groupId: 'g1',
  policyVersion: 7,
  promptTokens: [1, 20, 21, 22],
  completions: [
    { tokens: [5, 2], logprobs: [-0.25, -1.5], text: '5', rewards: { correct: 1, format: null }, finishReason: 'stop' },
    { tokens: [6, 7, 8], logprobs: [-2, -0.125, -3.75], text: '678', rewards: { correct: 0, format: 0.5 }, finishReason: 'length' },
  ],
  rewardErrors: [{ reward: 'correct', code: 'GRPO_ERR_REWARD_TIMEOUT', message: 'retried' }],
};

export const SAMPLES: { [K in Kind]: Extract<Message, { kind: K }> } = {
  [Kind.Hello]: { kind: Kind.Hello, protocolVersion: 1, role: 'worker', name: 'w-1', capacity: 4, policyVersion: null },
  [Kind.Welcome]: {
    kind: Kind.Welcome,
    protocolVersion: 1,
    sessionId: 'w1',
    role: 'worker',
    policyVersion: 3,
    weightsVersion: 3,
    heartbeatMs: 2000,
    peerTimeoutMs: 20000,
    leaseMs: 60000,
    maxPayloadBytes: 1 << 26,
    serverTime: 1_795_000_000_000,
  },
  [Kind.Heartbeat]: { kind: Kind.Heartbeat, time: 1_795_000_000_123, leaseIds: ['L1', 'L2'] },
  [Kind.Error]: { kind: Kind.Error, code: 'GRPO_ERR_BAD_FRAME', message: 'nope', ref: 'g1' },
  [Kind.Ready]: { kind: Kind.Ready, policyVersion: 0 },
  [Kind.RunSpec]: {
    kind: Kind.RunSpec,
    spec: {
      runId: 'run-1',
      model: { model_type: 'llama', vocab_size: 32, hidden_size: 16 },
      tokenizer: { version: '1.0', model: { type: 'WordLevel', vocab: { a: 0 } } },
      specialTokens: { bosId: 1, eosId: 2, padId: 0 },
      task: { name: 'arithmetic', seed: 7, options: { max_digits: 2 }, jsOnly: false },
      rewardWeights: { correct: 1, format: 0.1 },
      sampling: { temperature: 1, topK: 0, topP: 0.95, maxNewTokens: 12, seed: 3 },
      rewards: { timeoutMs: 10_000, retries: 2, functions: [{ name: 'correct', weight: 1, scope: 'completion', source: 'task' }] },
    },
  },
  [Kind.Enqueue]: { kind: Kind.Enqueue, groups: [spec] },
  [Kind.Lease]: { kind: Kind.Lease, leaseId: 'L1', policyVersion: 7, deadline: 1_795_000_060_000, ttlMs: 60000, groups: [spec] },
  [Kind.LeaseRevoked]: { kind: Kind.LeaseRevoked, leaseId: 'L1', reason: 'expired' },
  [Kind.Groups]: { kind: Kind.Groups, leaseId: 'L1', results: [rollout] },
  [Kind.GroupFailed]: { kind: Kind.GroupFailed, leaseId: 'L1', groupId: 'g1', code: 'GRPO_ERR_REWARD', message: 'threw' },
  [Kind.GroupResult]: { kind: Kind.GroupResult, sessionId: 'w1', workerName: 'w-1', leaseId: 'L1', attempts: 0, group: rollout },
  [Kind.GroupExhausted]: {
    kind: Kind.GroupExhausted,
    groupId: 'g1',
    promptIndex: 4,
    failures: 3,
    redispatches: 0,
    code: 'GRPO_ERR_TOO_MANY_ATTEMPTS',
    message: 'given up',
  },
  [Kind.Verdict]: { kind: Kind.Verdict, groupId: 'g1', admitted: true, reason: 'ok' },
  [Kind.PolicyVersion]: { kind: Kind.PolicyVersion, version: 8 },
  [Kind.WeightsBegin]: {
    kind: Kind.WeightsBegin,
    version: 8,
    encoding: 'bf16',
    tensors: [{ name: 'w', shape: [2, 3], byteOffset: 0, byteLength: 12 }],
    totalBytes: 16,
    chunkBytes: 8,
    chunkCount: 2,
    checksum: 0xdeadbeef,
  },
  [Kind.WeightsChunk]: { kind: Kind.WeightsChunk, version: 8, index: 1, bytes: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) },
  [Kind.WeightsEnd]: { kind: Kind.WeightsEnd, version: 8 },
};
