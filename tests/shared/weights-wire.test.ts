import { crc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeMessage } from '../../src/shared/codec.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { Kind, WireError } from '../../src/shared/protocol.js';
import type { WeightsMsg } from '../../src/shared/protocol.js';
import { Rng } from '../../src/shared/rng.js';
import { encodeWeights, validateWeightsBegin, WeightsAssembler, weightsMessages } from '../../src/shared/weights-wire.js';
import { expectCode } from '../helpers.js';

function tensors(seed = 1): NamedHostTensors {
  const rng = new Rng(seed);
  const make = (shape: number[]) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    for (let i = 0; i < n; i++) data[i] = (rng.next() - 0.5) * 4;
    return { shape, data };
  };
  return new Map([
    ['model.embed_tokens.weight', make([13, 7])], // 91 values: odd, so padding follows
    ['model.norm.weight', make([7])],
    ['lm_head.weight', make([3, 7])],
  ]);
}

/** Every message through the real codec, as the wire would carry it. */
function overWire(msgs: WeightsMsg[]): WeightsMsg[] {
  return msgs.map((m) => decodeMessage(encodeMessage(m)) as WeightsMsg);
}

function assemble(msgs: WeightsMsg[], a = new WeightsAssembler()) {
  let out = null;
  for (const m of msgs) out = a.pushAndDecode(m) ?? out;
  return out;
}

describe('weights on the wire', () => {
  it('lays tensors out 8-byte aligned with a CRC-32 of the payload', () => {
    const enc = encodeWeights(tensors(), 3, 'f32', 64);
    const offs = enc.begin.tensors.map((t) => t.byteOffset);
    expect(offs).toEqual([0, 368, 400]); // 91*4 = 364 -> next at 368; 7*4 = 28 -> 396 -> 400
    expect(enc.begin.totalBytes).toBe(488); // 400 + 84 = 484 -> 488
    expect(enc.begin.chunkCount).toBe(Math.ceil(488 / 64));
    expect(enc.begin.checksum).toBe(crc32(enc.payload));
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926); // the CRC-32 variant docs/protocol.md names
    expect(enc.chunks.at(-1)?.bytes.byteLength).toBe(488 - 7 * 64);
    validateWeightsBegin(enc.begin, 1 << 20);
  });

  it('round-trips f32 exactly', () => {
    const src = tensors();
    const got = assemble(overWire(weightsMessages(encodeWeights(src, 5, 'f32', 64))));
    expect(got?.version).toBe(5);
    for (const [name, t] of src) {
      expect(got?.tensors.get(name)?.shape).toEqual(t.shape);
      expect([...(got?.tensors.get(name)?.data ?? [])]).toEqual([...t.data]);
    }
  });

  it.each([
    ['f16', 2 ** -11],
    ['bf16', 2 ** -8],
  ] as const)('round-trips %s within half an ulp', (encoding, relUlp) => {
    const src = tensors(2);
    const got = assemble(overWire(weightsMessages(encodeWeights(src, 1, encoding, 40))));
    expect(got?.encoding).toBe(encoding);
    for (const [name, t] of src) {
      const back = got?.tensors.get(name)?.data as Float32Array;
      for (let i = 0; i < t.data.length; i++) {
        expect(Math.abs(back[i] - t.data[i])).toBeLessThanOrEqual(Math.abs(t.data[i]) * relUlp + 2 ** -24);
      }
    }
  });

  it('rejects a corrupted payload with a checksum error, then accepts the next version', () => {
    const msgs = weightsMessages(encodeWeights(tensors(), 1, 'f32', 64)).map((m) =>
      m.kind === Kind.WeightsChunk ? { ...m, bytes: m.bytes.slice() } : m,
    );
    const chunk = msgs[3] as { bytes: Uint8Array };
    chunk.bytes[5] ^= 0x10;
    const a = new WeightsAssembler();
    expectCode(() => assemble(msgs, a), WireError.WeightsChecksum);
    expect(assemble(weightsMessages(encodeWeights(tensors(), 2, 'f32', 64)), a)?.version).toBe(2);
  });

  it('rejects chunks out of order and an early End, ignoring the rest of that version', () => {
    const msgs = weightsMessages(encodeWeights(tensors(), 1, 'f32', 64));
    const a = new WeightsAssembler();
    a.push(msgs[0]);
    expectCode(() => a.push(msgs[2]), WireError.WeightsSequence);
    expect(a.push(msgs[1])).toBeNull(); // ignored: v1 already failed
    expect(a.push(msgs.at(-1) as WeightsMsg)).toBeNull();
    const b = new WeightsAssembler();
    b.push(msgs[0]);
    b.push(msgs[1]);
    expectCode(() => b.push(msgs.at(-1) as WeightsMsg), WireError.WeightsSequence);
  });

  it('a newer Begin abandons the version in progress; a stray chunk does not disturb it', () => {
    const v1 = weightsMessages(encodeWeights(tensors(1), 1, 'f32', 64));
    const v2 = weightsMessages(encodeWeights(tensors(2), 2, 'bf16', 64));
    const a = new WeightsAssembler();
    a.push(v1[0]);
    a.push(v1[1]);
    a.push(v2[0]);
    expect(a.abandoned).toBe(1);
    expectCode(() => a.push(v1[2]), WireError.WeightsSequence);
    const got = assemble(v2.slice(1), a);
    expect(got?.version).toBe(2);
  });

  it('validates the tensor table and the size limit', () => {
    const { begin } = encodeWeights(tensors(), 1, 'f32', 64);
    const bad = (patch: object) => () => validateWeightsBegin({ ...begin, ...patch }, 1 << 20);
    expectCode(bad({ chunkCount: 99 }), WireError.WeightsLayout);
    expectCode(bad({ totalBytes: 480, chunkCount: 8 }), WireError.WeightsLayout); // last tensor runs past the end
    expectCode(bad({ tensors: [{ ...begin.tensors[0], byteOffset: 4 }] }), WireError.WeightsLayout);
    expectCode(bad({ tensors: [begin.tensors[0], { ...begin.tensors[1], byteOffset: 8 }] }), WireError.WeightsLayout);
    expectCode(bad({ tensors: [{ ...begin.tensors[0], byteLength: 8 }] }), WireError.WeightsLayout);
    expectCode(bad({ tensors: [begin.tensors[0], { ...begin.tensors[0] }] }), WireError.WeightsLayout);
    expectCode(() => validateWeightsBegin(begin, 100), WireError.WeightsLayout);
    expectCode(() => encodeWeights(new Map([['x', { shape: [2, 2], data: new Float32Array(3) }]]), 1, 'f32', 64), WireError.WeightsLayout);
    expectCode(() => encodeWeights(tensors(), 1, 'f32', 60), WireError.WeightsLayout);
  });

  it('verifies without keeping the payload when asked (the coordinator)', () => {
    const a = new WeightsAssembler({ keepPayload: false });
    let done = null;
    for (const m of weightsMessages(encodeWeights(tensors(), 9, 'f16', 64))) done = a.push(m) ?? done;
    expect(done?.begin.version).toBe(9);
    expect(done?.payload).toBeNull();
  });
});
