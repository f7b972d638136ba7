import { describe, expect, it } from 'vitest';
import { CHUNK_HEADER_BYTES, decodeMessage, encodeMessage } from '../../src/shared/codec.js';
import { isGrpoError } from '../../src/shared/errors.js';
import { Kind, WireError } from '../../src/shared/protocol.js';
import type { Message } from '../../src/shared/protocol.js';
import { rollout, SAMPLES } from './protocol-samples.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
const ascii = (s: string): string => Buffer.from(s, 'ascii').toString('hex');

function codeOf(frame: Uint8Array): string {
  try {
    decodeMessage(frame);
  } catch (err) {
    expect(isGrpoError(err)).toBe(true);
    return (err as { code: string }).code;
  }
  return 'decoded';
}

describe('codec', () => {
  it('round-trips a sample of every message kind', () => {
    const kinds = Object.values(Kind);
    expect(Object.keys(SAMPLES).map(Number).sort((a, b) => a - b)).toEqual([...kinds].sort((a, b) => a - b));
    for (const msg of Object.values(SAMPLES) as Message[]) {
      const frame = encodeMessage(msg);
      const back = decodeMessage(frame);
      if (msg.kind === Kind.WeightsChunk && back.kind === Kind.WeightsChunk) {
        expect({ ...back, bytes: [...back.bytes] }).toEqual({ ...msg, bytes: [...msg.bytes] });
      } else {
        expect(back).toEqual(msg);
      }
    }
  });

  it('writes plain msgpack maps (fixmap here) and leaves undefined fields out', () => {
    const frame = encodeMessage({ kind: Kind.Error, code: 'GRPO_ERR_X', message: 'm', ref: undefined });
    expect(frame[0]).toBe(0x83); // fixmap of 3 entries: kind, code, message
    expect(decodeMessage(frame)).toEqual({ kind: Kind.Error, code: 'GRPO_ERR_X', message: 'm' });
  });

  it('reads msgpack written by hand, as another language would (uint64 time, float32 logprob)', () => {
    // {"kind": 3, "time": uint64 2^32, "leaseIds": ["L1"]}
    const hb = hex(`83 a4${ascii('kind')} 03 a4${ascii('time')} cf0000000100000000 a8${ascii('leaseIds')} 91 a2${ascii('L1')}`);
    expect(decodeMessage(hb)).toEqual({ kind: Kind.Heartbeat, time: 2 ** 32, leaseIds: ['L1'] });
    // {"kind": 5, "policyVersion": 2, "extra": true}: unknown fields are dropped
    const ready = hex(`83 a4${ascii('kind')} 05 ad${ascii('policyVersion')} 02 a5${ascii('extra')} c3`);
    expect(decodeMessage(ready)).toEqual({ kind: Kind.Ready, policyVersion: 2 });
  });

  it('lays a weights chunk out as a 16-byte little-endian header and the payload', () => {
    const bytes = Uint8Array.from({ length: 24 }, (_, i) => i);
    const frame = encodeMessage({ kind: Kind.WeightsChunk, version: 0x01020304, index: 5, bytes });
    expect(CHUNK_HEADER_BYTES % 8).toBe(0);
    expect([...frame.subarray(0, 16)]).toEqual([0x47, 0x52, 0x50, 0x57, 4, 3, 2, 1, 5, 0, 0, 0, 24, 0, 0, 0]);
    expect([...frame.subarray(16)]).toEqual([...bytes]);
    const back = decodeMessage(frame);
    expect(back.kind === Kind.WeightsChunk && back.bytes.byteOffset - frame.byteOffset).toBe(16); // a view, no copy
  });

  it('answers undecodable bytes with BadFrame', () => {
    expect(codeOf(hex('c1'))).toBe(WireError.BadFrame); // never-used msgpack byte
    expect(codeOf(hex('83a46b696e64'))).toBe(WireError.BadFrame); // truncated map
    expect(codeOf(hex('9103'))).toBe(WireError.BadFrame); // an array, not a map
    expect(codeOf(hex('c0'))).toBe(WireError.BadFrame); // nil
    expect(codeOf(hex('a3616263'))).toBe(WireError.BadFrame); // a string
    expect(codeOf(new Uint8Array(0))).toBe(WireError.BadFrame);
    expect(codeOf(Uint8Array.of(...encodeMessage(SAMPLES[Kind.Ready]), 0))).toBe(WireError.BadFrame); // trailing byte
    expect(codeOf(hex('47525057 01000000'))).toBe(WireError.BadFrame); // chunk header cut short
    expect(codeOf(hex('47525057 01000000 00000000 09000000 0102'))).toBe(WireError.BadFrame); // length mismatch
  });

  it('answers an unknown kind with UnknownKind and a bad field with BadMessage naming it', () => {
    expect(codeOf(encodeMessage({ ...SAMPLES[Kind.Ready], kind: 99 } as unknown as Message))).toBe(WireError.UnknownKind);
    expect(codeOf(hex(`81 a4${ascii('kind')} 16`))).toBe(WireError.UnknownKind); // a chunk as msgpack
    const noKind = hex(`81 a4${ascii('name')} a1${ascii('x')}`);
    expect(codeOf(noKind)).toBe(WireError.UnknownKind);
    const nanLogprob = structuredClone(SAMPLES[Kind.Groups]);
    nanLogprob.results[0].completions[1].logprobs[2] = Number.NaN;
    expect(() => decodeMessage(encodeMessage(nanLogprob))).toThrowError(/Groups\.results\.0\.completions\.1\.logprobs\.2/);
    const badVerdict = { ...SAMPLES[Kind.Verdict], admitted: false } as Message;
    expect(codeOf(encodeMessage(badVerdict))).toBe(WireError.BadMessage);
    expect(codeOf(encodeMessage({ ...rollout, kind: Kind.Hello } as unknown as Message))).toBe(WireError.BadMessage);
  });
});
