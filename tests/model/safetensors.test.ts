import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeSafetensors, encodeSafetensors, readSafetensorsFile, safetensorsChunks } from '../../src/model/safetensors.js';
import type { NamedHostTensors } from '../../src/model/types.js';
import { expectCode } from '../helpers.js';

/** A safetensors file from a raw header object and data bytes, for hand-made and broken inputs. */
function rawFile(header: unknown, data: Uint8Array, opts: { headerLen?: bigint } = {}): Uint8Array {
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const out = Buffer.alloc(8 + json.length + data.length);
  out.writeBigUInt64LE(opts.headerLen ?? BigInt(json.length), 0);
  json.copy(out, 8);
  Buffer.from(data).copy(out, 8 + json.length);
  return out;
}

function u16le(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(v, i * 2));
  return b;
}

const sample = (): NamedHostTensors =>
  new Map([
    ['model.embed_tokens.weight', { shape: [3, 2], data: new Float32Array([1, -2, 3.5, 1e-30, -0, Number.MAX_VALUE]) }],
    ['model.norm.weight', { shape: [3], data: new Float32Array([0.1, 0.2, 0.3]) }],
    ['scalar', { shape: [], data: new Float32Array([42]) }],
    ['empty', { shape: [0, 4], data: new Float32Array(0) }],
  ]);

describe('safetensors encode/decode', () => {
  it('round-trips float32 tensors, shapes, order and metadata bit-exactly', () => {
    const tensors = sample();
    const { tensors: back, metadata } = decodeSafetensors(encodeSafetensors(tensors, { format: 'pt', note: 'x' }));
    expect(metadata).toEqual({ format: 'pt', note: 'x' });
    expect([...back.keys()]).toEqual([...tensors.keys()]);
    for (const [name, t] of tensors) {
      expect(back.get(name)!.shape).toEqual(t.shape);
      expect(Buffer.from(back.get(name)!.data.buffer).equals(Buffer.from(t.data.buffer))).toBe(true);
    }
  });

  it('pads the header with spaces so the data starts 8-byte aligned, and writes the reference layout', () => {
    for (const name of ['a', 'ab', 'abc', 'abcd', 'abcde', 'abcdef', 'abcdefg', 'abcdefgh']) {
      const buf = encodeSafetensors(new Map([[name, { shape: [1], data: new Float32Array([1]) }]]));
      const n = Number(buf.readBigUInt64LE(0));
      expect((8 + n) % 8).toBe(0);
      const header = buf.subarray(8, 8 + n).toString('utf8');
      expect(header.trimEnd()).toBe(JSON.stringify({ [name]: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }));
      expect(header.slice(header.trimEnd().length)).toMatch(/^ *$/);
      expect(buf.length).toBe(8 + n + 4);
      expect(buf.readFloatLE(8 + n)).toBe(1);
    }
  });

  it('streams the same bytes as encodeSafetensors, with tensor chunks as views (no copy)', () => {
    const tensors = sample();
    const chunks = safetensorsChunks(tensors, { format: 'pt' });
    expect(Buffer.concat(chunks).equals(encodeSafetensors(tensors, { format: 'pt' }))).toBe(true);
    expect(chunks[1].buffer).toBe(tensors.get('model.embed_tokens.weight')!.data.buffer);
  });

  it('decodes tensors written by another writer in any offset order, from an unaligned buffer', () => {
    const data = Buffer.alloc(12);
    data.writeFloatLE(7, 0); // b
    data.writeFloatLE(1.5, 4); // a[0]
    data.writeFloatLE(-2.5, 8); // a[1]
    const file = rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [4, 12] }, b: { dtype: 'F32', shape: [], data_offsets: [0, 4] } }, data);
    const shifted = new Uint8Array(file.length + 1).subarray(1); // byteOffset 1: not 4-aligned
    shifted.set(file);
    const { tensors, metadata } = decodeSafetensors(shifted);
    expect(metadata).toEqual({});
    expect([...tensors.get('a')!.data]).toEqual([1.5, -2.5]);
    expect([...tensors.get('b')!.data]).toEqual([7]);
  });

  it('decodes F16 to float32 exactly: normals, subnormals, zero signs, infinities and NaN', () => {
    // bit patterns from IEEE 754 binary16
    const bits = [0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x0400, 0x8000, 0x7c00, 0xfc00, 0x7e00];
    const file = rawFile({ h: { dtype: 'F16', shape: [2, 5], data_offsets: [0, 20] } }, u16le(bits));
    const t = decodeSafetensors(file).tensors.get('h')!;
    expect(t.shape).toEqual([2, 5]);
    const v = [...t.data];
    expect(v.slice(0, 9)).toEqual([1, -2, 0.333251953125, 65504, 2 ** -24, 2 ** -14, -0, Infinity, -Infinity]);
    expect(Object.is(v[6], -0)).toBe(true);
    expect(Number.isNaN(v[9])).toBe(true);
  });

  it('decodes BF16 to float32 exactly (the top half of the float32 bits)', () => {
    const bits = [0x3f80, 0xc040, 0x3eaa, 0x7f80, 0x0001];
    const file = rawFile({ b: { dtype: 'BF16', shape: [5], data_offsets: [0, 10] } }, u16le(bits));
    const v = [...decodeSafetensors(file).tensors.get('b')!.data];
    expect(v.slice(0, 4)).toEqual([1, -3, 0.33203125, Infinity]);
    expect(v[4]).toBe(new Float32Array(new Uint32Array([0x0001_0000]).buffer)[0]); // a float32 subnormal
  });

  it('rejects a header length beyond the file, and files shorter than 8 bytes', () => {
    const good = encodeSafetensors(sample());
    expectCode(() => decodeSafetensors(good.subarray(0, 5)), 'GRPO_ERR_BAD_SAFETENSORS', 'shorter than');
    const huge = Buffer.from(good);
    huge.writeBigUInt64LE(1n << 60n, 0);
    expectCode(() => decodeSafetensors(huge), 'GRPO_ERR_BAD_SAFETENSORS', 'header length');
  });

  it('rejects headers that are not a JSON object', () => {
    const text = (s: string): Uint8Array => {
      const b = Buffer.alloc(8 + Buffer.byteLength(s));
      b.writeBigUInt64LE(BigInt(Buffer.byteLength(s)), 0);
      b.write(s, 8);
      return b;
    };
    expectCode(() => decodeSafetensors(text('{"a": ')), 'GRPO_ERR_BAD_SAFETENSORS', 'not valid JSON');
    expectCode(() => decodeSafetensors(text('[1, 2]')), 'GRPO_ERR_BAD_SAFETENSORS', 'JSON object');
    expectCode(() => decodeSafetensors(text('null')), 'GRPO_ERR_BAD_SAFETENSORS');
    const invalidUtf8 = Buffer.from([2, 0, 0, 0, 0, 0, 0, 0, 0x7b, 0xff]);
    expectCode(() => decodeSafetensors(invalidUtf8), 'GRPO_ERR_BAD_SAFETENSORS', 'UTF-8');
  });

  it('rejects unsupported dtypes, bad shapes and offsets that disagree with the shape', () => {
    const d8 = new Uint8Array(8);
    expectCode(() => decodeSafetensors(rawFile({ x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, d8)), 'GRPO_ERR_BAD_SAFETENSORS', 'I64');
    expectCode(() => decodeSafetensors(rawFile({ x: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, d8)), 'GRPO_ERR_BAD_SAFETENSORS', 'shape');
    expectCode(() => decodeSafetensors(rawFile({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, d8)), 'GRPO_ERR_BAD_SAFETENSORS', 'needs 12');
    expectCode(() => decodeSafetensors(rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, d8)), 'GRPO_ERR_BAD_SAFETENSORS', 'data_offsets');
    expectCode(() => decodeSafetensors(rawFile({ x: { dtype: 'F32', shape: [2] } }, d8)), 'GRPO_ERR_BAD_SAFETENSORS', 'data_offsets');
    expectCode(() => decodeSafetensors(rawFile({ x: 3 }, d8)), 'GRPO_ERR_BAD_SAFETENSORS', 'not an object');
    expectCode(
      () => decodeSafetensors(rawFile({ __metadata__: { n: 1 }, x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, d8)),
      'GRPO_ERR_BAD_SAFETENSORS',
      'strings',
    );
  });

  it('rejects overlapping tensors, gaps, truncated data and trailing bytes', () => {
    const two = (a: [number, number], b: [number, number], len: number): Uint8Array =>
      rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: a }, b: { dtype: 'F32', shape: [1], data_offsets: b } }, new Uint8Array(len));
    expectCode(() => decodeSafetensors(two([0, 4], [2, 6], 8)), 'GRPO_ERR_BAD_SAFETENSORS', 'overlaps');
    expectCode(() => decodeSafetensors(two([0, 4], [8, 12], 12)), 'GRPO_ERR_BAD_SAFETENSORS', 'gap');
    expectCode(() => decodeSafetensors(two([0, 4], [4, 8], 6)), 'GRPO_ERR_BAD_SAFETENSORS', 'truncated');
    expectCode(() => decodeSafetensors(two([0, 4], [4, 8], 9)), 'GRPO_ERR_BAD_SAFETENSORS', 'truncated');
  });

  it('refuses to encode tensors whose data does not match the shape, or non-string metadata', () => {
    expectCode(() => encodeSafetensors(new Map([['x', { shape: [2, 2], data: new Float32Array(3) }]])), 'GRPO_ERR_BAD_SAFETENSORS', 'needs 4');
    expectCode(() => encodeSafetensors(new Map([['x', { shape: [1.5], data: new Float32Array(1) }]])), 'GRPO_ERR_BAD_SAFETENSORS', 'shape');
    expectCode(
      () => encodeSafetensors(new Map(), { n: 1 as unknown as string }),
      'GRPO_ERR_BAD_SAFETENSORS',
      'strings only',
    );
  });
});

describe('half-precision writing and reading from disk', () => {
  it('writes F16 and BF16 rounded to nearest even, recorded per tensor, decoded back to those values', () => {
    // 1 + 2^-11 is a tie in F16 (rounds to 1, even); 1 + 3 * 2^-11 rounds up to 1 + 2^-9
    const data = new Float32Array([1, 1 + 2 ** -11, 1 + 3 * 2 ** -11, -2.5, 65504, 1e-8]);
    const f16 = decodeSafetensors(encodeSafetensors(new Map([['w', { shape: [6], data }]]), { format: 'pt' }, 'F16'));
    expect(f16.dtypes.get('w')).toBe('F16');
    expect([...f16.tensors.get('w')!.data]).toEqual([1, 1, 1 + 2 ** -9, -2.5, 65504, 0]);
    // BF16 keeps 8 significant bits: 1 + 2^-8 is a tie (rounds to 1), 1 + 3 * 2^-8 rounds up to 1 + 2^-6
    const bdata = new Float32Array([1 + 2 ** -8, 1 + 3 * 2 ** -8, 3 + 3 * 2 ** -7, -0]);
    const bf16 = decodeSafetensors(encodeSafetensors(new Map([['w', { shape: [2, 2], data: bdata }]]), undefined, 'BF16'));
    expect(bf16.dtypes.get('w')).toBe('BF16');
    expect(bf16.tensors.get('w')!.shape).toEqual([2, 2]);
    expect([...bf16.tensors.get('w')!.data]).toEqual([1, 1 + 2 ** -6, 3 + 2 ** -5, -0]);
    expectCode(() => encodeSafetensors(sample(), undefined, 'I8' as 'F32'), 'GRPO_ERR_BAD_SAFETENSORS', 'cannot write dtype "I8"');
  });

  it('reads a file from disk tensor by tensor to the same result, naming the file in errors', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'st-'));
    try {
      const path = join(dir, 'a.safetensors');
      const buf = encodeSafetensors(sample(), { format: 'pt' });
      await writeFile(path, buf);
      const fromDisk = await readSafetensorsFile(path);
      const inMemory = decodeSafetensors(buf);
      expect(fromDisk.metadata).toEqual(inMemory.metadata);
      expect([...fromDisk.tensors.keys()]).toEqual([...inMemory.tensors.keys()]);
      for (const [name, t] of inMemory.tensors) expect(fromDisk.tensors.get(name)!.data, name).toEqual(t.data);
      await writeFile(path, buf.subarray(0, buf.length - 4)); // truncated
      await expect(readSafetensorsFile(path)).rejects.toMatchObject({ code: 'GRPO_ERR_BAD_SAFETENSORS', message: expect.stringContaining(path) });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
