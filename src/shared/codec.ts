/**
 * Frames <-> messages. The only module that touches msgpackr.
 *
 * Every WebSocket message is one binary frame of one of two forms:
 *  - a weights chunk: the 4 magic bytes `GRPW`, then little-endian uint32 version, uint32 index,
 *    uint32 payload length, then the payload. The header is 16 bytes, so the payload starts
 *    8-byte aligned relative to the frame start;
 *  - anything else: one msgpack map (standard msgpack, no extensions) with an integer `kind`.
 * A msgpack map never begins with the byte 0x47 ('G'), so the first 4 bytes tell them apart.
 */
import { Packr, Unpackr } from 'msgpackr';
import type { Options } from 'msgpackr';
import { clipText } from './clip.js';
import { GrpoError } from './errors.js';
import { Kind, WireError } from './protocol.js';
import type { Message, WeightsChunkMsg } from './protocol.js';
import { validateMessage } from './protocol-schema.js';

export const CHUNK_MAGIC = Uint8Array.of(0x47, 0x52, 0x50, 0x57); // 'GRPW'
export const CHUNK_HEADER_BYTES = 16;

// Plain msgpack so peers in other languages can read it: no records/structures extension, keys
// whose value is undefined left out (an optional field is absent, never nil), undefined in
// arrays as nil, 64-bit integers as JS numbers, maps as plain objects.
const packr = new Packr({ useRecords: false, encodeUndefinedAsNil: true, moreTypes: false, skipValues: [undefined] } as Options);
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

/** One message -> one frame. WeightsChunk gets the binary chunk layout; the rest is msgpack. */
export function encodeMessage(msg: Message): Uint8Array {
  if (msg.kind === Kind.WeightsChunk) return encodeChunkFrame(msg);
  return packr.pack(msg);
}

export function encodeChunkFrame(msg: WeightsChunkMsg): Uint8Array {
  const frame = new Uint8Array(CHUNK_HEADER_BYTES + msg.bytes.byteLength);
  frame.set(CHUNK_MAGIC, 0);
  const view = new DataView(frame.buffer, frame.byteOffset, CHUNK_HEADER_BYTES);
  view.setUint32(4, msg.version, true);
  view.setUint32(8, msg.index, true);
  view.setUint32(12, msg.bytes.byteLength, true);
  frame.set(msg.bytes, CHUNK_HEADER_BYTES);
  return frame;
}

export function isChunkFrame(data: Uint8Array): boolean {
  return (
    data.byteLength >= 4 &&
    data[0] === CHUNK_MAGIC[0] &&
    data[1] === CHUNK_MAGIC[1] &&
    data[2] === CHUNK_MAGIC[2] &&
    data[3] === CHUNK_MAGIC[3]
  );
}

/**
 * One frame -> one validated message. Throws GrpoError BadFrame (undecodable), UnknownKind or
 * BadMessage. A chunk's `bytes` is a view into `data`, not a copy.
 */
export function decodeMessage(data: Uint8Array): Message {
  if (isChunkFrame(data)) return decodeChunkFrame(data);
  let value: unknown;
  try {
    value = unpackr.unpack(data);
  } catch (err) {
    throw new GrpoError(WireError.BadFrame, `frame of ${data.byteLength} bytes is not msgpack: ${clipText((err as Error).message)}`, {
      cause: err,
    });
  }
  if (typeof value !== 'object' || value === null || Object.getPrototypeOf(value) !== Object.prototype) {
    throw new GrpoError(WireError.BadFrame, `frame holds a msgpack ${describe(value)}, expected a map with a "kind"`);
  }
  return validateMessage(value as Record<string, unknown>);
}

/**
 * The `kind` a msgpack frame claims, without validating anything else; null for a chunk frame,
 * a text that is no msgpack map, or a map without a numeric kind. For answering a frame that
 * failed decodeMessage by what it tried to be (a malformed Hello, a kind the sender may not send).
 */
export function claimedKind(data: Uint8Array): number | null {
  if (isChunkFrame(data)) return null;
  try {
    const value: unknown = unpackr.unpack(data);
    const kind = typeof value === 'object' && value !== null ? (value as { kind?: unknown }).kind : undefined;
    return typeof kind === 'number' ? kind : null;
  } catch {
    return null; // not msgpack: it claims nothing
  }
}

function decodeChunkFrame(data: Uint8Array): WeightsChunkMsg {
  if (data.byteLength < CHUNK_HEADER_BYTES) {
    throw new GrpoError(WireError.BadFrame, `chunk frame of ${data.byteLength} bytes is shorter than its 16-byte header`);
  }
  const view = new DataView(data.buffer, data.byteOffset, CHUNK_HEADER_BYTES);
  const length = view.getUint32(12, true);
  if (length !== data.byteLength - CHUNK_HEADER_BYTES) {
    throw new GrpoError(
      WireError.BadFrame,
      `chunk header says ${length} payload bytes, frame carries ${data.byteLength - CHUNK_HEADER_BYTES}`,
    );
  }
  return {
    kind: Kind.WeightsChunk,
    version: view.getUint32(4, true),
    index: view.getUint32(8, true),
    bytes: data.subarray(CHUNK_HEADER_BYTES),
  };
}

function describe(value: unknown): string {
  if (value === null) return 'nil';
  if (Array.isArray(value)) return 'array';
  if (value instanceof Uint8Array) return 'bin';
  if (typeof value === 'object') return `${value.constructor?.name ?? 'object'} value`;
  return typeof value;
}
