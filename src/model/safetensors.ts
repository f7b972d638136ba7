/**
 * The safetensors file format, as Hugging Face's `safetensors` library reads and writes it:
 *
 *   [8 bytes]  N, the header length, unsigned 64-bit little-endian
 *   [N bytes]  UTF-8 JSON: {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 *              ..., "__metadata__": {"key": "string value"}}, padded with trailing spaces
 *   [rest]     the tensors' raw little-endian bytes; data_offsets are relative to this section,
 *              and the tensors tile it exactly (no gaps, no overlaps, nothing after the last)
 *
 * We write F32 (the default: checkpoints keep full precision), F16 or BF16 (rounded to nearest
 * even, to save a model in the dtype it was published in) and read all three, widening the 16-bit
 * kinds to float32, since most published checkpoints are half precision. readSafetensorsFile
 * reads a file tensor by tensor with positional reads, so files past Node's 2 GiB readFile limit
 * load too. Every malformed input fails with GRPO_ERR_BAD_SAFETENSORS naming what is wrong.
 */
import { open } from 'node:fs/promises';
import { endianness } from 'node:os';
import { GrpoError } from '../shared/errors.js';
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from '../shared/float16.js';
import type { HostTensor, NamedHostTensors } from './types.js';

const METADATA_KEY = '__metadata__';
/** Same cap as the reference implementation: a larger header is corruption, not a model. */
const MAX_HEADER_BYTES = 100_000_000;
const BYTES_PER_ELEMENT = { F32: 4, F16: 2, BF16: 2 } as const;
/** The element types we read and write (safetensors' names). */
export type SafetensorsDtype = keyof typeof BYTES_PER_ELEMENT;

export interface DecodedSafetensors {
  tensors: NamedHostTensors; // float32, in header order
  metadata: Record<string, string>;
  dtypes: Map<string, SafetensorsDtype>; // what each tensor was stored as
}

interface HeaderEntry {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

function bad(message: string): GrpoError {
  return new GrpoError('GRPO_ERR_BAD_SAFETENSORS', message);
}

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * The file as a list of byte chunks: the 8-byte length plus JSON header, then each tensor's bytes
 * (views, not copies, for F32), so a large checkpoint can be streamed to disk without a second
 * copy. Tensors are written as `dtype` in insertion order; the header is padded with spaces so the
 * data section starts at a multiple of 8 bytes, letting readers map tensors without copying.
 */
export function safetensorsChunks(
  tensors: NamedHostTensors,
  metadata?: Record<string, string>,
  dtype: SafetensorsDtype = 'F32',
): Uint8Array[] {
  if (!(dtype in BYTES_PER_ELEMENT)) throw bad(`cannot write dtype ${JSON.stringify(dtype)}; supported: ${Object.keys(BYTES_PER_ELEMENT).join(', ')}`);
  checkLittleEndian();
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw bad(`metadata value of "${k}" is a ${typeof v}; safetensors metadata holds strings only`);
    }
    header[METADATA_KEY] = metadata;
  }
  const chunks: Uint8Array[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    if (name === METADATA_KEY) throw bad(`a tensor cannot be named ${METADATA_KEY}`);
    if (!t.shape.every((s) => Number.isInteger(s) && s >= 0)) {
      throw bad(`tensor ${name} has shape [${t.shape}]; dimensions must be non-negative integers`);
    }
    if (t.data.length !== numel(t.shape)) {
      throw bad(`tensor ${name} holds ${t.data.length} values but shape [${t.shape}] needs ${numel(t.shape)}`);
    }
    const bytes = tensorBytes(t.data, dtype);
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    offset += bytes.byteLength;
    chunks.push(bytes);
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const pad = (8 - ((8 + json.length) % 8)) % 8;
  const head = Buffer.alloc(8 + json.length + pad, 0x20); // trailing spaces are the padding
  head.writeBigUInt64LE(BigInt(json.length + pad), 0);
  json.copy(head, 8);
  return [head, ...chunks];
}

/** float32 values as the little-endian bytes of `dtype` (a view for F32, a rounded copy otherwise). */
function tensorBytes(data: Float32Array, dtype: SafetensorsDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const halves = new Uint16Array(data.length);
  if (dtype === 'F16') encodeF16(data, halves);
  else encodeBf16(data, halves);
  return new Uint8Array(halves.buffer);
}

/** The whole file in one buffer (see safetensorsChunks). */
export function encodeSafetensors(tensors: NamedHostTensors, metadata?: Record<string, string>, dtype: SafetensorsDtype = 'F32'): Buffer {
  return Buffer.concat(safetensorsChunks(tensors, metadata, dtype));
}

/** Decodes a safetensors file into float32 host tensors (in header order), its metadata and stored dtypes. */
export function decodeSafetensors(buf: Uint8Array): DecodedSafetensors {
  checkLittleEndian();
  if (buf.length < 8) throw bad(`file is ${buf.length} bytes, shorter than the 8-byte header length`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const n = headerLength(view.getBigUint64(0, true), buf.length);
  const dataStart = 8 + n;
  const { entries, metadata } = parseLayout(buf.subarray(8, dataStart), buf.length - dataStart);
  const tensors: NamedHostTensors = new Map();
  const dtypes = new Map<string, SafetensorsDtype>();
  for (const [name, e] of entries) {
    const [begin, end] = e.data_offsets;
    tensors.set(name, toFloat32(e, buf.subarray(dataStart + begin, dataStart + end)));
    dtypes.set(name, e.dtype as SafetensorsDtype);
  }
  return { tensors, metadata, dtypes };
}

/**
 * Reads a safetensors file from disk like decodeSafetensors, one tensor at a time with
 * positional reads: peak memory is the float32 result plus one tensor's raw bytes, and files
 * larger than 2 GiB (which fs.readFile refuses) work. Errors name the file.
 */
export async function readSafetensorsFile(path: string): Promise<DecodedSafetensors> {
  checkLittleEndian();
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    const readAt = async (position: number, length: number): Promise<Buffer> => {
      const buf = Buffer.alloc(length);
      let done = 0;
      while (done < length) {
        const { bytesRead } = await fh.read(buf, done, length - done, position + done);
        if (bytesRead === 0) throw bad(`${path}: file ended at byte ${position + done} while reading ${length} bytes at ${position}`);
        done += bytesRead;
      }
      return buf;
    };
    try {
      if (size < 8) throw bad(`file is ${size} bytes, shorter than the 8-byte header length`);
      const n = headerLength((await readAt(0, 8)).readBigUInt64LE(0), size);
      const dataStart = 8 + n;
      const { entries, metadata } = parseLayout(await readAt(8, n), size - dataStart);
      const tensors: NamedHostTensors = new Map();
      const dtypes = new Map<string, SafetensorsDtype>();
      for (const [name, e] of entries) {
        const [begin, end] = e.data_offsets;
        tensors.set(name, toFloat32(e, await readAt(dataStart + begin, end - begin)));
        dtypes.set(name, e.dtype as SafetensorsDtype);
      }
      return { tensors, metadata, dtypes };
    } catch (err) {
      if (err instanceof GrpoError && err.code === 'GRPO_ERR_BAD_SAFETENSORS' && !err.message.startsWith(path)) {
        throw new GrpoError('GRPO_ERR_BAD_SAFETENSORS', `${path}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  } finally {
    await fh.close();
  }
}

/** The header length field, checked against the file size and the reference reader's cap. */
function headerLength(len: bigint, fileSize: number): number {
  if (len > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
    throw bad(`header length ${len} exceeds the ${fileSize - 8} bytes after it (limit ${MAX_HEADER_BYTES})`);
  }
  return Number(len);
}

/** Parses and checks the JSON header against a data section of `dataLen` bytes. */
function parseLayout(headerBytes: Uint8Array, dataLen: number): { entries: [string, HeaderEntry][]; metadata: Record<string, string> } {
  const raw = parseHeader(headerBytes);
  const metadata = readMetadata(raw[METADATA_KEY]);
  const entries: [string, HeaderEntry][] = [];
  for (const [name, value] of Object.entries(raw)) {
    if (name !== METADATA_KEY) entries.push([name, checkEntry(name, value)]);
  }
  checkTiling(entries, dataLen);
  return { entries, metadata };
}

function parseHeader(bytes: Uint8Array): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new GrpoError('GRPO_ERR_BAD_SAFETENSORS', 'header is not valid UTF-8', { cause: err });
  }
  if (!text.startsWith('{')) throw bad(`header must be a JSON object starting with "{", found ${JSON.stringify(text.slice(0, 16))}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new GrpoError('GRPO_ERR_BAD_SAFETENSORS', `header is not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw bad('header must be a JSON object');
  return parsed as Record<string, unknown>;
}

function readMetadata(raw: unknown): Record<string, string> {
  if (raw === undefined || raw === null) return {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw bad(`${METADATA_KEY} must be an object of strings`);
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') throw bad(`${METADATA_KEY}.${k} is a ${typeof v}; metadata values must be strings`);
    out[k] = v;
  }
  return out;
}

function checkEntry(name: string, value: unknown): HeaderEntry {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw bad(`entry ${name} is not an object`);
  const e = value as Record<string, unknown>;
  if (typeof e.dtype !== 'string' || !(e.dtype in BYTES_PER_ELEMENT)) {
    throw bad(`tensor ${name} has dtype ${JSON.stringify(e.dtype)}; supported: ${Object.keys(BYTES_PER_ELEMENT).join(', ')}`);
  }
  const shape = e.shape;
  if (!Array.isArray(shape) || !shape.every((s) => Number.isSafeInteger(s) && s >= 0)) {
    throw bad(`tensor ${name} has shape ${JSON.stringify(shape)}; expected an array of non-negative integers`);
  }
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0) || off[0] > off[1]) {
    throw bad(`tensor ${name} has data_offsets ${JSON.stringify(off)}; expected [begin, end] with 0 <= begin <= end`);
  }
  const want = numel(shape as number[]) * BYTES_PER_ELEMENT[e.dtype as SafetensorsDtype];
  if (off[1] - off[0] !== want) {
    throw bad(`tensor ${name} spans ${off[1] - off[0]} bytes but ${e.dtype} shape [${shape}] needs ${want}`);
  }
  return { dtype: e.dtype, shape: shape as number[], data_offsets: [off[0], off[1]] };
}

/** The tensors, sorted by offset, must cover [0, dataLen) exactly, as the reference reader demands. */
function checkTiling(entries: [string, HeaderEntry][], dataLen: number): void {
  const sorted = [...entries].sort((a, b) => a[1].data_offsets[0] - b[1].data_offsets[0]);
  let expected = 0;
  for (const [name, e] of sorted) {
    const [begin, end] = e.data_offsets;
    if (begin !== expected) {
      throw bad(
        begin < expected
          ? `tensor ${name} at bytes [${begin}, ${end}) overlaps the previous tensor, which ends at ${expected}`
          : `gap in the data: tensor ${name} starts at byte ${begin}, previous data ends at ${expected}`,
      );
    }
    expected = end;
  }
  if (expected !== dataLen) {
    throw bad(`header describes ${expected} data bytes but the file holds ${dataLen} after the header (truncated or padded file)`);
  }
}

function toFloat32(e: HeaderEntry, bytes: Uint8Array): HostTensor {
  const n = numel(e.shape);
  const data = new Float32Array(n);
  if (e.dtype === 'F32') {
    new Uint8Array(data.buffer).set(bytes); // byte copy: file offsets need not be 4-aligned
    return { shape: [...e.shape], data };
  }
  const halves = new Uint16Array(n); // aligned copy of the 16-bit values
  new Uint8Array(halves.buffer).set(bytes);
  if (e.dtype === 'F16') decodeF16(halves, data);
  else decodeBf16(halves, data);
  return { shape: [...e.shape], data };
}

function checkLittleEndian(): void {
  // Typed arrays use the host's byte order and the format is little-endian; every platform
  // Node ships for is little-endian, so this guards against silent garbage rather than a real case.
  if (endianness() !== 'LE') throw new GrpoError('GRPO_ERR_UNSUPPORTED_PLATFORM', 'safetensors I/O needs a little-endian host');
}
