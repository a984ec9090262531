"""CTranslate2's model.bin (what faster-whisper runs): its layout, read without its tensors.

Not a pickle despite the name. The layout (ctranslate2/specs/model_spec.py, binary version 6):
a u32 version, the spec's name and a u32 revision, a u32 count of variables, each a name,
a u8 rank, that many u32 dimensions, a u8 dtype, a u32 byte count and the bytes; then a u32
count of aliases, each two names. A name is a u16 length (with its NUL) and the bytes. All
little-endian. The reader seeks past tensor bytes and checks that every count and size fits
the file, so a lying header is caught before a runtime trusts it.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from owl.errors import ModelFormatError

VERSION = 6  # CURRENT_BINARY_VERSION of ctranslate2 4.x
# Bytes per element, in the order of ctranslate2's DataType enum (include/ctranslate2/types.h).
DTYPES = (("float32", 4), ("int8", 1), ("int16", 2), ("int32", 4), ("float16", 2), ("bfloat16", 2))
MAX_RANK = 8
MAX_VARIABLES = 1_000_000


@dataclass(frozen=True)
class Variable:
    name: str
    shape: tuple[int, ...]
    dtype: str
    offset: int  # where its bytes start in the file
    size: int


@dataclass(frozen=True)
class Layout:
    version: int
    spec: str  # e.g. WhisperSpec
    revision: int
    variables: tuple[Variable, ...]
    aliases: dict[str, str]


def looks_like_ctranslate2(head: bytes) -> bool:
    """Whether the first bytes are a CTranslate2 header: a small version, then a spec name."""
    if len(head) < 8:
        return False
    version, length = struct.unpack_from("<IH", head)
    if not 1 <= version <= VERSION or not 2 <= length <= len(head) - 6:
        return False
    name = head[6 : 6 + length]
    return name.endswith(b"\0") and name[:-1].isascii() and name[:-1].decode().isidentifier()


class _Reader:
    def __init__(self, handle: BinaryIO, size: int) -> None:
        self.handle = handle
        self.size = size

    def take(self, count: int, what: str) -> bytes:
        data = self.handle.read(count)
        if len(data) != count:
            raise ModelFormatError(f"the file ends inside {what}: it is truncated")
        return data

    def number(self, fmt: str, what: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt), what))[0]

    def name(self, what: str) -> str:
        length = self.number("H", what)
        raw = self.take(length, what)
        if length == 0 or not raw.endswith(b"\0") or b"\0" in raw[:-1]:
            raise ModelFormatError(f"{what} is not a NUL-terminated name")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFormatError(f"{what} is not UTF-8") from None

    def skip(self, count: int, what: str) -> int:
        offset = self.handle.tell()
        if offset + count > self.size:
            raise ModelFormatError(f"{what} runs past the end of the file: it is truncated")
        self.handle.seek(count, 1)
        return offset


def _variable(reader: _Reader, index: int) -> Variable:
    name = reader.name(f"the name of variable {index}")
    where = f"variable {name[:80]!r}"
    rank = reader.number("B", where)
    if rank > MAX_RANK:
        raise ModelFormatError(f"{where} has {rank} dimensions (at most {MAX_RANK})")
    shape = tuple(reader.number("I", where) for _ in range(rank))
    dtype_id = reader.number("B", where)
    if dtype_id >= len(DTYPES):
        raise ModelFormatError(f"{where} has an unknown dtype id {dtype_id}")
    dtype, width = DTYPES[dtype_id]
    size = reader.number("I", where)
    if size != math.prod(shape) * width:
        raise ModelFormatError(
            f"{where} says {size} bytes, but its shape {list(shape)} of {dtype} needs "
            f"{math.prod(shape) * width}"
        )
    offset = reader.skip(size, where)
    return Variable(name=name, shape=shape, dtype=dtype, offset=offset, size=size)


def read_layout(path: Path) -> Layout:
    """The header of the model.bin at `path`; ModelFormatError when it is not a whole one."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        reader = _Reader(handle, size)
        version = reader.number("I", "the version")
        if version != VERSION:
            raise ModelFormatError(
                f"CTranslate2 binary version {version}; owl reads version {VERSION} "
                "(convert the model again with ctranslate2 4)"
            )
        spec = reader.name("the spec name")
        revision = reader.number("I", "the revision")
        count = reader.number("I", "the variable count")
        if count > MAX_VARIABLES:
            raise ModelFormatError(f"{count} variables (at most {MAX_VARIABLES:,})")
        variables = tuple(_variable(reader, index) for index in range(count))
        names = {variable.name for variable in variables}
        if len(names) != len(variables):
            raise ModelFormatError("two variables have the same name")
        aliases: dict[str, str] = {}
        for index in range(reader.number("I", "the alias count")):
            alias = reader.name(f"alias {index}")
            target = reader.name(f"the target of alias {alias[:80]!r}")
            if target not in names or alias in names or alias in aliases:
                raise ModelFormatError(f"alias {alias[:80]!r} names no variable of its own")
            aliases[alias] = target
        if handle.tell() != size:
            raise ModelFormatError(f"{size - handle.tell()} bytes follow the model's last entry")
    return Layout(version, spec, revision, variables, aliases)
