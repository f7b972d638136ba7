/**
 * Weights on the wire: what the learner (sender) and workers/coordinator (receivers) share.
 *
 * One version = WeightsBegin (tensor table, sizes, CRC-32), WeightsChunk 0..n-1 in order,
 * WeightsEnd. The payload is the tensors back to back in the table's order, each starting at a
 * multiple of 8 bytes (zero padding between), each element little-endian in the version's
 * encoding (f32, or f16 / bf16 rounded to nearest even). The checksum is zlib's CRC-32 over
 * the whole payload, padding included, computed incrementally as chunks arrive.
 */
import { endianness } from 'node:os';
import { crc32 } from 'node:zlib';
import { GrpoError } from './errors.js';
import { decodeBf16, decodeF16, encodeBf16, encodeF16 } from './float16.js';
import type { HostTensor, NamedHostTensors } from './host-tensor.js';
import { Kind, PROTOCOL_DEFAULTS, WireError } from './protocol.js';
import type { AdapterInfo,
  TensorEntry,
  WeightsBeginMsg,
  WeightsChunkMsg,
  WeightsEncoding,
  WeightsEndMsg,
  WeightsMsg,
} from './protocol.js';

export const BYTES_PER_ELEMENT: Readonly<Record<WeightsEncoding, number>> = { f32: 4, f16: 2, bf16: 2 };
const ALIGN = 8; // tensor offsets and chunk sizes are multiples of this

export interface EncodedWeights {
  begin: WeightsBeginMsg;
  chunks: WeightsChunkMsg[]; // views into `payload`, not copies
  end: WeightsEndMsg;
  payload: Uint8Array; // [totalBytes]
}

function assertLittleEndian(): void {
  if (endianness() !== 'LE') {
    throw new GrpoError('GRPO_ERR_UNSUPPORTED_PLATFORM', 'weights codec needs a little-endian host');
  }
}

function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

const alignUp = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

/** Lays the tensors out, converts them to `encoding`, checksums and cuts the payload into chunks. */
export function encodeWeights(
  tensors: NamedHostTensors,
  version: number,
  encoding: WeightsEncoding,
  chunkBytes: number = PROTOCOL_DEFAULTS.weightsChunkBytes,
  adapter?: AdapterInfo,
): EncodedWeights {
  assertLittleEndian();
  if (!Number.isInteger(version) || version < 0 || version > 0xffff_ffff) {
    throw new GrpoError(WireError.WeightsLayout, `weights version ${version} must be an integer in [0, 2^32)`);
  }
  if (!Number.isInteger(chunkBytes) || chunkBytes <= 0 || chunkBytes % ALIGN !== 0) {
    throw new GrpoError(WireError.WeightsLayout, `chunkBytes ${chunkBytes} must be a positive multiple of ${ALIGN}`);
  }
  const bpe = BYTES_PER_ELEMENT[encoding];
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (const [name, t] of tensors) {
    const n = elementCount(t.shape);
    if (n !== t.data.length) {
      throw new GrpoError(WireError.WeightsLayout, `tensor ${name}: shape [${t.shape}] holds ${n} values, data has ${t.data.length}`);
    }
    offset = alignUp(offset);
    entries.push({ name, shape: [...t.shape], byteOffset: offset, byteLength: n * bpe });
    offset += n * bpe;
  }
  const totalBytes = alignUp(offset);
  const payload = new Uint8Array(totalBytes);
  let i = 0;
  for (const t of tensors.values()) writeTensor(payload, entries[i++], t, encoding);

  const chunkCount = Math.ceil(totalBytes / chunkBytes);
  const chunks: WeightsChunkMsg[] = [];
  for (let c = 0; c < chunkCount; c++) {
    const start = c * chunkBytes;
    chunks.push({ kind: Kind.WeightsChunk, version, index: c, bytes: payload.subarray(start, Math.min(totalBytes, start + chunkBytes)) });
  }
  const begin: WeightsBeginMsg = {
    kind: Kind.WeightsBegin,
    version,
    encoding,
    ...(adapter ? { adapter } : {}),
    tensors: entries,
    totalBytes,
    chunkBytes,
    chunkCount,
    checksum: crc32(payload),
  };
  return { begin, chunks, end: { kind: Kind.WeightsEnd, version }, payload };
}

/** Begin, every chunk, End: the order they go on the wire. */
export function weightsMessages(enc: EncodedWeights): WeightsMsg[] {
  return [enc.begin, ...enc.chunks, enc.end];
}

function writeTensor(payload: Uint8Array, e: TensorEntry, t: HostTensor, encoding: WeightsEncoding): void {
  const n = t.data.length;
  switch (encoding) {
    case 'f32':
      new Float32Array(payload.buffer, payload.byteOffset + e.byteOffset, n).set(t.data);
      return;
    case 'f16':
      encodeF16(t.data, new Uint16Array(payload.buffer, payload.byteOffset + e.byteOffset, n));
      return;
    case 'bf16':
      encodeBf16(t.data, new Uint16Array(payload.buffer, payload.byteOffset + e.byteOffset, n));
      return;
  }
}

/** Throws WeightsLayout unless the tensor table of `begin` fits its payload exactly as documented. */
export function validateWeightsBegin(begin: WeightsBeginMsg, maxTotalBytes: number): void {
  const fail = (why: string): never => {
    throw new GrpoError(WireError.WeightsLayout, `weights v${begin.version}: ${why}`);
  };
  if (begin.totalBytes > maxTotalBytes) {
    fail(`totalBytes ${begin.totalBytes} exceeds the limit ${maxTotalBytes}; raise maxWeightsBytes`);
  }
  if (begin.totalBytes % ALIGN !== 0) fail(`totalBytes ${begin.totalBytes} is not a multiple of ${ALIGN}`);
  const expectedChunks = Math.ceil(begin.totalBytes / begin.chunkBytes);
  if (begin.chunkCount !== expectedChunks) {
    fail(`chunkCount ${begin.chunkCount}, expected ceil(${begin.totalBytes} / ${begin.chunkBytes}) = ${expectedChunks}`);
  }
  const bpe = BYTES_PER_ELEMENT[begin.encoding];
  const names = new Set<string>();
  let end = 0;
  for (const e of [...begin.tensors].sort((a, b) => a.byteOffset - b.byteOffset)) {
    if (names.has(e.name)) fail(`tensor ${e.name} appears twice`);
    names.add(e.name);
    if (e.byteOffset % ALIGN !== 0) fail(`tensor ${e.name} starts at ${e.byteOffset}, not a multiple of ${ALIGN}`);
    if (e.byteLength !== elementCount(e.shape) * bpe) {
      fail(`tensor ${e.name}: byteLength ${e.byteLength} != ${elementCount(e.shape)} elements * ${bpe} bytes`);
    }
    if (e.byteOffset < end) fail(`tensor ${e.name} at ${e.byteOffset} overlaps the previous tensor ending at ${end}`);
    end = e.byteOffset + e.byteLength;
    if (end > begin.totalBytes) fail(`tensor ${e.name} ends at ${end}, past totalBytes ${begin.totalBytes}`);
  }
}

/** Payload bytes -> float32 host tensors, in the table's order. */
export function decodeWeightsPayload(begin: WeightsBeginMsg, payload: Uint8Array): NamedHostTensors {
  assertLittleEndian();
  const out: NamedHostTensors = new Map();
  for (const e of begin.tensors) {
    const n = e.byteLength / BYTES_PER_ELEMENT[begin.encoding];
    const bytes = payload.slice(e.byteOffset, e.byteOffset + e.byteLength); // a copy: aligned, owned
    let data: Float32Array;
    if (begin.encoding === 'f32') {
      data = new Float32Array(bytes.buffer, 0, n);
    } else {
      data = new Float32Array(n);
      const half = new Uint16Array(bytes.buffer, 0, n);
      if (begin.encoding === 'f16') decodeF16(half, data);
      else decodeBf16(half, data);
    }
    out.set(e.name, { shape: [...e.shape], data });
  }
  return out;
}

export interface AssembledWeights {
  begin: WeightsBeginMsg;
  payload: Uint8Array | null; // null when the assembler was made with keepPayload: false
}

export interface WeightsAssemblerOptions {
  maxTotalBytes?: number; // largest payload accepted (bytes)
  keepPayload?: boolean; // false: verify only (the coordinator keeps the frames itself)
}

interface InProgress {
  begin: WeightsBeginMsg;
  payload: Uint8Array | null;
  next: number; // index of the next expected chunk
  crc: number; // CRC-32 of chunks 0..next-1
}

/**
 * Rebuilds one version at a time from Begin/Chunk/End messages and verifies it. A Begin while
 * another version is in progress abandons the older one (the sender moved on to a newer
 * version). After an error, the rest of that version's chunks and its End are ignored.
 */
export class WeightsAssembler {
  private current: InProgress | null = null;
  private failedVersion: number | null = null;
  private readonly maxTotalBytes: number;
  private readonly keepPayload: boolean;
  abandoned = 0; // versions dropped part-way because a newer Begin came

  constructor(opts: WeightsAssemblerOptions = {}) {
    this.maxTotalBytes = opts.maxTotalBytes ?? PROTOCOL_DEFAULTS.maxWeightsBytes;
    this.keepPayload = opts.keepPayload ?? true;
  }

  /** The version being assembled, or null. */
  get inProgress(): number | null {
    return this.current?.begin.version ?? null;
  }

  /** Feeds one message; returns the verified version after its End, else null. Throws coded errors. */
  push(msg: WeightsMsg): AssembledWeights | null {
    switch (msg.kind) {
      case Kind.WeightsBegin:
        this.begin(msg);
        return null;
      case Kind.WeightsChunk:
        this.chunk(msg);
        return null;
      case Kind.WeightsEnd:
        return this.end(msg);
    }
  }

  /** Feeds one message and decodes the finished version into float32 tensors. */
  pushAndDecode(msg: WeightsMsg): { version: number; epoch: number; encoding: WeightsEncoding; adapter?: AdapterInfo; tensors: NamedHostTensors } | null {
    const done = this.push(msg);
    if (done === null || done.payload === null) return null;
    const { version, encoding, adapter } = done.begin;
    return { version, epoch: done.begin.epoch ?? 0, encoding, ...(adapter ? { adapter } : {}), tensors: decodeWeightsPayload(done.begin, done.payload) };
  }

  private begin(msg: WeightsBeginMsg): void {
    if (this.current !== null) this.abandoned += 1;
    this.current = null;
    this.failedVersion = null;
    try {
      validateWeightsBegin(msg, this.maxTotalBytes);
    } catch (err) {
      this.failedVersion = msg.version;
      throw err;
    }
    this.current = { begin: msg, payload: this.keepPayload ? new Uint8Array(msg.totalBytes) : null, next: 0, crc: 0 };
  }

  private chunk(msg: WeightsChunkMsg): void {
    if (msg.version === this.failedVersion) return;
    const cur = this.expect(msg.version, `chunk ${msg.index}`);
    const { begin } = cur;
    if (msg.index !== cur.next) this.fail(WireError.WeightsSequence, `v${msg.version}: chunk ${msg.index} arrived, expected ${cur.next}`);
    const start = msg.index * begin.chunkBytes;
    const length = Math.min(begin.totalBytes - start, begin.chunkBytes);
    if (msg.index >= begin.chunkCount || msg.bytes.byteLength !== length) {
      this.fail(WireError.WeightsSequence, `v${msg.version}: chunk ${msg.index} has ${msg.bytes.byteLength} bytes, expected ${length} of ${begin.chunkCount} chunks`);
    }
    cur.crc = crc32(msg.bytes, cur.crc);
    cur.payload?.set(msg.bytes, start);
    cur.next += 1;
  }

  private end(msg: WeightsEndMsg): AssembledWeights | null {
    if (msg.version === this.failedVersion) {
      this.failedVersion = null;
      return null;
    }
    const cur = this.expect(msg.version, 'End');
    if (cur.next !== cur.begin.chunkCount) {
      this.fail(WireError.WeightsSequence, `v${msg.version}: End after ${cur.next} of ${cur.begin.chunkCount} chunks`);
    }
    if (cur.crc !== cur.begin.checksum) {
      this.fail(WireError.WeightsChecksum, `v${msg.version}: CRC-32 of the payload is ${cur.crc}, WeightsBegin said ${cur.begin.checksum}`);
    }
    this.current = null;
    return { begin: cur.begin, payload: cur.payload };
  }

  private expect(version: number, what: string): InProgress {
    const cur = this.current;
    if (cur === null || cur.begin.version !== version) {
      // A stray message: reported, but it does not disturb the version in progress.
      const state = cur === null ? 'no version in progress' : `v${cur.begin.version} in progress`;
      throw new GrpoError(WireError.WeightsSequence, `weights ${what} for v${version} with ${state}`);
    }
    return cur;
  }

  /** Drops the version in progress; its remaining chunks and End are ignored. */
  private fail(code: WireError, message: string): never {
    this.failedVersion = this.current?.begin.version ?? null;
    this.current = null;
    throw new GrpoError(code, message);
  }
}
