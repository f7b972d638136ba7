import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  ACCEPTED_FROM,
  CloseCode,
  isKind,
  Kind,
  kindName,
  PROTOCOL_DEFAULTS,
  PROTOCOL_VERSION,
  WireError,
} from '../../src/shared/protocol.js';
import { validateMessage } from '../../src/shared/protocol-schema.js';
import { SAMPLES } from './protocol-samples.js';

describe('protocol constants', () => {
  it('gives every kind a distinct number and a name', () => {
    const values = Object.values(Kind);
    expect(new Set(values).size).toBe(values.length);
    expect(kindName(Kind.Lease)).toBe('Lease');
    expect(kindName(99)).toBe('kind 99');
    expect(isKind(Kind.Verdict)).toBe(true);
    expect(isKind(99)).toBe(false);
    expect(isKind('1')).toBe(false);
  });

  it('uses distinct application close codes from 4000 and GRPO_ERR_ error codes', () => {
    const codes = Object.values(CloseCode);
    expect(new Set(codes).size).toBe(codes.length);
    for (const c of codes) expect(c >= 4000 && c <= 4999).toBe(true);
    for (const e of Object.values(WireError)) expect(e).toMatch(/^GRPO_ERR_[A-Z0-9_]+$/);
  });

  it('lets workers and the learner send only their own kinds', () => {
    expect(ACCEPTED_FROM.worker.has(Kind.Groups)).toBe(true);
    expect(ACCEPTED_FROM.worker.has(Kind.Enqueue)).toBe(false);
    expect(ACCEPTED_FROM.worker.has(Kind.WeightsChunk)).toBe(false);
    expect(ACCEPTED_FROM.learner.has(Kind.WeightsChunk)).toBe(true);
    expect(ACCEPTED_FROM.learner.has(Kind.Groups)).toBe(false);
    for (const role of ['worker', 'learner'] as const) {
      for (const k of [Kind.Hello, Kind.Welcome, Kind.Lease, Kind.GroupResult]) expect(ACCEPTED_FROM[role].has(k)).toBe(false);
    }
  });

  it('has frozen defaults whose timing rules hold', () => {
    expect(Object.isFrozen(PROTOCOL_DEFAULTS)).toBe(true);
    expect(PROTOCOL_DEFAULTS.peerTimeoutMs).toBeGreaterThanOrEqual(3 * PROTOCOL_DEFAULTS.heartbeatMs);
    expect(PROTOCOL_DEFAULTS.leaseMs).toBeGreaterThan(PROTOCOL_DEFAULTS.peerTimeoutMs);
    expect(PROTOCOL_DEFAULTS.weightsChunkBytes % 8).toBe(0);
    expect(PROTOCOL_DEFAULTS.weightsChunkBytes + 16).toBeLessThanOrEqual(PROTOCOL_DEFAULTS.maxPayloadBytes);
  });
});

describe('validateMessage', () => {
  it('accepts the samples and names the failing field', () => {
    for (const msg of Object.values(SAMPLES)) {
      if (msg.kind !== Kind.WeightsChunk) expect(validateMessage({ ...msg })).toEqual(msg);
    }
    expect(() => validateMessage({ ...SAMPLES[Kind.Hello], role: 'judge' })).toThrowError(/Hello\.role/);
    expect(() => validateMessage({ ...SAMPLES[Kind.Enqueue], groups: [{ groupId: '' }] })).toThrowError(/Enqueue\.groups\.0\.groupId/);
    expect(() => validateMessage({ ...SAMPLES[Kind.Error], code: 'oops' })).toThrowError(/Error\.code/);
    expect(() => validateMessage({ ...SAMPLES[Kind.PolicyVersion], version: -1 })).toThrowError(/PolicyVersion\.version/);
    expect(() => validateMessage({ ...SAMPLES[Kind.WeightsBegin], chunkBytes: 12 })).toThrowError(/WeightsBegin\.chunkBytes/);
  });
});

describe('docs/protocol.md', () => {
  const doc = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

  it('documents every kind with its number, every close code and every error code', () => {
    for (const [name, k] of Object.entries(Kind)) expect(doc).toMatch(new RegExp(`\\|\\s*${k}\\s*\\|\\s*${name}\\s*\\|`));
    for (const c of Object.values(CloseCode)) expect(doc).toContain(String(c));
    for (const e of Object.values(WireError)) expect(doc).toContain(e);
    expect(doc).toContain(`protocolVersion\` is ${PROTOCOL_VERSION}`);
  });

  it('documents every default knob', () => {
    for (const key of Object.keys(PROTOCOL_DEFAULTS)) expect(doc).toContain(`\`${key}\``);
  });
});
