"""Frames and weights of the grpo-cluster protocol (docs/protocol.md sections 2 and 7).

Every WebSocket message is one binary frame: either a weights chunk (16-byte little-endian header
starting with b"GRPW", then the payload) or one msgpack map with an integer "kind".
"""
import math
import struct
import zlib

import msgpack
import numpy as np

# Message kinds (docs/protocol.md section 3).
HELLO, WELCOME, HEARTBEAT, ERROR, READY, RUN_SPEC = 1, 2, 3, 4, 5, 6
ENQUEUE, LEASE, LEASE_REVOKED, GROUPS, GROUP_FAILED = 10, 11, 12, 13, 14
POLICY_VERSION, WEIGHTS_BEGIN, WEIGHTS_CHUNK, WEIGHTS_END = 20, 21, 22, 23

CHUNK_MAGIC = b"GRPW"
CHUNK_HEADER = struct.Struct("<4sIII")  # magic, version, index, payload length: 16 bytes
CLOSE_WEIGHTS_CORRUPT = 4005
CLOSE_PROTOCOL_VERSION = 4002  # do not reconnect after it
ELEMENT_BYTES = {"f32": 4, "f16": 2, "bf16": 2}


class ProtocolError(Exception):
    """A coded error (GRPO_ERR_...), as the document names them."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def encode(msg):
    """One message (a dict with "kind") to one binary frame. Optional fields are left out, never nil."""
    return msgpack.packb({k: v for k, v in msg.items() if v is not None or k == "policyVersion"}, use_bin_type=True)


def decode(frame):
    """One binary frame to a dict; a weights chunk becomes {"kind": 22, "version", "index", "bytes"}."""
    if frame[:4] == CHUNK_MAGIC:
        if len(frame) < CHUNK_HEADER.size:
            raise ProtocolError("GRPO_ERR_BAD_FRAME", f"chunk frame of {len(frame)} bytes is shorter than its header")
        _, version, index, length = CHUNK_HEADER.unpack_from(frame)
        if length != len(frame) - CHUNK_HEADER.size:
            raise ProtocolError("GRPO_ERR_BAD_FRAME", f"chunk header says {length} bytes, frame carries {len(frame) - 16}")
        return {"kind": WEIGHTS_CHUNK, "version": version, "index": index, "bytes": memoryview(frame)[CHUNK_HEADER.size:]}
    msg = msgpack.unpackb(frame, raw=False)
    if not isinstance(msg, dict) or not isinstance(msg.get("kind"), int):
        raise ProtocolError("GRPO_ERR_BAD_FRAME", "frame is not a msgpack map with an integer kind")
    return msg


def _decode_tensor(raw, encoding, shape):
    """Little-endian payload bytes of one tensor to a float32 array of `shape`."""
    if encoding == "f32":
        a = np.frombuffer(raw, dtype="<f4")
    elif encoding == "f16":
        a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    else:  # bf16: the upper 16 bits of a float32
        a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    return a.astype(np.float32, copy=False).reshape(shape)


class WeightsAssembler:
    """Reassembles one weights version at a time: Begin, chunks 0..n-1 in order, End (section 7)."""

    def __init__(self, max_bytes=2 * 1024**3):
        self.max_bytes = max_bytes
        self.begin = None
        self.buf = None
        self.next = 0
        self.crc = 0
        self.failed_version = None  # after an error, the rest of that version is ignored

    def push(self, msg):
        """Feeds one weights message; returns (version, encoding, {name: array}) when a version completes."""
        kind = msg["kind"]
        if kind == WEIGHTS_BEGIN:
            self._start(msg)
            return None
        if msg["version"] == self.failed_version:
            return None
        if self.begin is None or msg["version"] != self.begin["version"]:
            self._fail(msg["version"], "GRPO_ERR_WEIGHTS_SEQUENCE", f"weights message of version {msg['version']}, none in progress")
        if kind == WEIGHTS_CHUNK:
            self._chunk(msg)
            return None
        return self._end()

    def _fail(self, version, code, message):
        self.failed_version = version
        self.begin = None
        self.buf = None
        raise ProtocolError(code, message)

    def _start(self, b):
        v, total, chunk = b["version"], b["totalBytes"], b["chunkBytes"]
        size = ELEMENT_BYTES.get(b["encoding"])
        bad = None
        if size is None:
            bad = f"unknown encoding {b['encoding']}"
        elif total > self.max_bytes:
            bad = f"{total} bytes exceed the limit {self.max_bytes}"
        elif chunk <= 0 or chunk % 8 != 0 or b["chunkCount"] != math.ceil(total / chunk):
            bad = f"chunkBytes {chunk} / chunkCount {b['chunkCount']} do not fit totalBytes {total}"
        else:
            end = 0
            for t in sorted(b["tensors"], key=lambda t: t["byteOffset"]):
                if t["byteOffset"] % 8 != 0 or t["byteOffset"] < end or t["byteLength"] != math.prod(t["shape"]) * size:
                    bad = f"tensor {t['name']} is misaligned, overlaps or has the wrong length"
                    break
                end = t["byteOffset"] + t["byteLength"]
            if bad is None and end > total:
                bad = f"tensors end at {end}, beyond totalBytes {total}"
        if bad is not None:
            self._fail(v, "GRPO_ERR_WEIGHTS_LAYOUT", bad)
        self.begin, self.buf, self.next, self.crc, self.failed_version = b, bytearray(total), 0, 0, None

    def _chunk(self, c):
        b = self.begin
        start = c["index"] * b["chunkBytes"]
        want = min(b["chunkBytes"], b["totalBytes"] - start)
        if c["index"] != self.next or len(c["bytes"]) != want:
            self._fail(b["version"], "GRPO_ERR_WEIGHTS_SEQUENCE", f"chunk {c['index']} of {len(c['bytes'])} bytes, expected chunk {self.next} of {want}")
        self.buf[start : start + want] = c["bytes"]
        self.crc = zlib.crc32(c["bytes"], self.crc)  # CRC-32 as zlib computes it, chunk by chunk
        self.next += 1

    def _end(self):
        b = self.begin
        if self.next != b["chunkCount"]:
            self._fail(b["version"], "GRPO_ERR_WEIGHTS_SEQUENCE", f"End after {self.next} of {b['chunkCount']} chunks")
        if self.crc != b["checksum"]:
            self._fail(b["version"], "GRPO_ERR_WEIGHTS_CHECKSUM", f"CRC-32 {self.crc:#010x}, WeightsBegin says {b['checksum']:#010x}")
        raw = bytes(self.buf)
        tensors = {
            t["name"]: _decode_tensor(raw[t["byteOffset"] : t["byteOffset"] + t["byteLength"]], b["encoding"], t["shape"])
            for t in b["tensors"]
        }
        self.begin, self.buf = None, None
        return b["version"], b["encoding"], tensors
