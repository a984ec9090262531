"""GGUF files built byte by byte with struct, for the malformed ones no writer would make.

`build_gguf` lays out a little-endian GGUF (v3 by default) from metadata entries and
tensor entries; with its defaults the result is a valid file (tests check that it is), and
each argument bends one rule.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
GGML_F32, GGML_Q4_0 = 0, 2


def gguf_string(text: str | bytes) -> bytes:
    """A GGUF string: u64 length, then the bytes."""
    raw = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv_entry(key: str | bytes, value_type: int, payload: bytes) -> bytes:
    """One metadata entry: key, value type, and the value's bytes as given."""
    return gguf_string(key) + struct.pack("<I", value_type) + payload


def kv_u32(key: str, value: int) -> bytes:
    return kv_entry(key, U32, struct.pack("<I", value))


def kv_str(key: str, value: str | bytes) -> bytes:
    return kv_entry(key, STRING, gguf_string(value))


def kv_str_array(key: str, items: Sequence[str | bytes]) -> bytes:
    payload = struct.pack("<IQ", STRING, len(items)) + b"".join(map(gguf_string, items))
    return kv_entry(key, ARRAY, payload)


@dataclass
class RawTensor:
    """A tensor entry; offset None means "where llama.cpp expects it"."""

    name: str | bytes
    shape: tuple[int, ...]
    ggml_type: int = GGML_F32
    offset: int | None = None
    n_dims: int | None = None  # None: len(shape)

    def n_bytes(self) -> int:
        """Bytes of data for an F32 or Q4_0 tensor of this shape."""
        elements = 1
        for dim in self.shape:
            elements *= dim
        if self.ggml_type == GGML_Q4_0:
            return elements // 32 * 18
        return elements * 4


def _pad(offset: int, alignment: int) -> int:
    return offset + (-offset % alignment)


def build_gguf(
    kv: Sequence[bytes] = (),
    tensors: Sequence[RawTensor] = (),
    *,
    magic: bytes = b"GGUF",
    version: int = 3,
    n_kv: int | None = None,
    n_tensors: int | None = None,
    alignment: int = 32,
    data_size: int | None = None,
) -> bytes:
    """A GGUF file's bytes; counts, offsets and data size default to the right ones."""
    n_tensors = len(tensors) if n_tensors is None else n_tensors
    n_kv = len(kv) if n_kv is None else n_kv
    head = magic + struct.pack("<Iqq", version, n_tensors, n_kv)
    head += b"".join(kv)
    running = 0
    for tensor in tensors:
        offset = running if tensor.offset is None else tensor.offset
        n_dims = len(tensor.shape) if tensor.n_dims is None else tensor.n_dims
        head += gguf_string(tensor.name) + struct.pack("<I", n_dims)
        head += b"".join(struct.pack("<q", dim) for dim in tensor.shape)
        head += struct.pack("<iQ", tensor.ggml_type, offset)
        running = _pad(offset + tensor.n_bytes(), alignment)
    if not tensors:
        return head
    head += b"\0" * (_pad(len(head), alignment) - len(head))
    return head + b"\x01" * (running if data_size is None else data_size)
