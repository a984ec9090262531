"""The pieces of a GGUF header reader: metadata entries and tensor-table entries.

An own bounded reader, not gguf.GGUFReader: every count and length is checked against
the bytes that are left before it is used, string arrays (the vocabulary, the merges) are
skipped by their length prefixes without being decoded, and tensor data is never read.
The rules are those of llama.cpp's ggml/src/gguf.cpp; a file that breaks one raises
GGUFError with a reason a person reads and the place it was found.
owl.formats.gguf.read_gguf_header puts the pieces together.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from functools import cache

from owl.errors import ModelFormatError

MAGIC = b"GGUF"
DEFAULT_ALIGNMENT = 32
MAX_DIMS = 4  # GGML_MAX_DIMS
MAX_NAME = 64  # GGML_MAX_NAME, which counts the C string's closing NUL
MAX_STRING = 1 << 30  # GGUF_MAX_STRING_LENGTH
MAX_ARRAY = 1 << 30  # GGUF_MAX_ARRAY_ELEMENTS
MAX_ARRAY_DEPTH = 8  # llama.cpp refuses nested arrays; the spec allows them
MAX_DECODED_STRING = 1 << 20  # longer strings are measured, not decoded
INT64_MAX = (1 << 63) - 1
SIZE_MAX = (1 << 64) - 1
ALIGNMENT_KEY = "general.alignment"

STRING, ARRAY = 8, 9
_SCALARS = {  # GGUFValueType → struct format; BOOL (7) is an int8 read as != 0
    0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<b",
    10: "<Q", 11: "<q", 12: "<d",
}  # fmt: skip
_TYPE_NAMES = {
    0: "u8", 1: "i8", 2: "u16", 3: "i16", 4: "u32", 5: "i32", 6: "f32", 7: "bool",
    8: "string", 9: "array", 10: "u64", 11: "i64", 12: "f64",
}  # fmt: skip
# The fewest bytes one metadata entry (key length, 1-byte key, type, u8 value) and one
# tensor entry (name length, empty name, dimension count, type, offset) can take.
_MIN_KV = 8 + 1 + 4 + 1
_MIN_TENSOR = 8 + 4 + 4 + 8
CORRUPT = "the file is truncated or corrupt: download it again"


class GGUFError(ModelFormatError):
    """A GGUF file that breaks a rule of the format: why (`reason`) and where (`location`)."""

    def __init__(self, reason: str, *, location: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location


class TensorPastEnd(GGUFError):
    """A tensor whose data would end past the end of the file: the file was cut short."""

    def __init__(self, reason: str, *, location: str, tensor: str, end: int, size: int) -> None:
        super().__init__(reason, location=location)
        self.tensor = tensor
        self.end = end
        self.size = size


@dataclass(frozen=True)
class GGUFArray:
    """An array value, measured but not read: its item type (GGUFValueType) and length."""

    item_type: int
    count: int
    offset: int  # of its first item in the file


@dataclass(frozen=True)
class LongString:
    """A string value longer than MAX_DECODED_STRING, measured but not decoded."""

    length: int
    offset: int


Value = bool | int | float | str | bytes | GGUFArray | LongString  # bytes: not valid UTF-8


@dataclass(frozen=True)
class TensorInfo:
    """One entry of the tensor table; `offset` is relative to the data section."""

    name: str
    shape: tuple[int, ...]
    type: int  # GGMLQuantizationType
    offset: int
    n_bytes: int


@dataclass
class GGUFHeader:
    """Everything before a GGUF file's tensor data, checked for consistency."""

    version: int
    alignment: int
    kv: dict[str, Value] = field(default_factory=dict)
    tensors: list[TensorInfo] = field(default_factory=list)
    data_offset: int = 0  # where the data section starts in the file
    file_size: int = 0


def shown(name: str, limit: int = 80) -> str:
    """A name from the file, quoted and escaped for a message, and cut if long."""
    text = repr(name[:limit])
    return text + "…" if len(name) > limit else text


def pad(offset: int, alignment: int) -> int:
    """`offset` rounded up to a multiple of `alignment`."""
    return offset + (-offset % alignment)


@cache
def _type_sizes() -> dict[int, tuple[int, int]]:
    from gguf import GGML_QUANT_SIZES

    return {int(kind): sizes for kind, sizes in GGML_QUANT_SIZES.items()}


def type_name(kind: int) -> str:
    """The GGMLQuantizationType name of a tensor type, or its number if it has none."""
    from gguf import GGMLQuantizationType

    try:
        return GGMLQuantizationType(kind).name
    except ValueError:
        return str(kind)


class Reader:
    """A cursor over the mapped file that fails with GGUFError, naming where it was."""

    def __init__(self, data: mmap.mmap | bytes, size: int) -> None:
        self.data = data
        self.size = size
        self.pos = 0
        self.where = "header"

    def fail(self, reason: str) -> GGUFError:
        return GGUFError(reason, location=self.where)

    def need(self, n: int, what: str) -> None:
        if n > self.size - self.pos:
            raise self.fail(
                f"{what} at byte {self.pos:,} needs {n:,} bytes but the file ends at "
                f"byte {self.size:,}; {CORRUPT}"
            )

    def unpack(self, fmt: str, what: str) -> int | float:
        self.need(struct.calcsize(fmt), what)
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return value

    def string_length(self, what: str) -> int:
        length = int(self.unpack("<Q", f"the length of {what}"))
        if length > MAX_STRING:
            raise self.fail(f"{what} claims {length:,} bytes, more than llama.cpp accepts (1 GiB)")
        self.need(length, what)
        return length

    def raw_string(self, what: str) -> bytes:
        length = self.string_length(what)
        self.pos += length
        return self.data[self.pos - length : self.pos]

    def text(self, what: str) -> str:
        raw = self.raw_string(what)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail(f"{what} is not valid UTF-8: {raw[:40]!r}") from None

    def value(self, kind: int, what: str, depth: int = 0) -> Value:
        if kind in _SCALARS:
            value = self.unpack(_SCALARS[kind], what)
            return value != 0 if kind == 7 else value
        if kind == STRING:
            length = self.string_length(what)
            self.pos += length
            if length > MAX_DECODED_STRING:
                return LongString(length, self.pos - length)
            raw = self.data[self.pos - length : self.pos]
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                return raw
        if kind == ARRAY:
            return self.array(what, depth)
        raise self.fail(f"{what} has value type {kind}, which GGUF does not define (0 to 12)")

    def array(self, what: str, depth: int) -> GGUFArray:
        if depth >= MAX_ARRAY_DEPTH:
            raise self.fail(f"{what} nests arrays more than {MAX_ARRAY_DEPTH} deep")
        item = int(self.unpack("<I", f"the item type of {what}"))
        count = int(self.unpack("<Q", f"the length of {what}"))
        start = self.pos
        if count > MAX_ARRAY:
            raise self.fail(f"{what} claims {count:,} items, more than llama.cpp accepts")
        if item in _SCALARS:
            self.need(count * struct.calcsize(_SCALARS[item]), what)
            self.pos += count * struct.calcsize(_SCALARS[item])
        elif item == STRING:
            self.need(count * 8, what)  # every item has at least its length prefix
            self._skip_strings(count, what)
        elif item == ARRAY:
            self.need(count * 12, what)  # every item has at least its type and length
            for _ in range(count):
                self.array(what, depth + 1)
        else:
            raise self.fail(f"{what} is an array of type {item}, which GGUF does not define")
        return GGUFArray(item, count, start)

    def _skip_strings(self, count: int, what: str) -> None:
        # The hot loop of the scan (a vocabulary and its merges: ~100k strings), kept lean.
        length_at = struct.Struct("<Q").unpack_from
        data, size, pos = self.data, self.size, self.pos
        for index in range(count):
            if pos + 8 <= size:
                (length,) = length_at(data, pos)
                if length <= MAX_STRING and pos + 8 + length <= size:
                    pos += 8 + length
                    continue
            self.pos = pos
            self.string_length(f"item {index:,} of {what}")  # fails, saying why
        self.pos = pos


def read_metadata(reader: Reader, kv: dict[str, Value]) -> tuple[int, int, int]:
    """Read the preamble and the metadata into `kv`; return version, tensor count, alignment."""
    if reader.data[:4] != MAGIC:
        raise reader.fail(f"it does not start with the GGUF magic but {reader.data[:4]!r}")
    reader.pos = 4
    version = int(reader.unpack("<I", "the version"))
    _check_version(reader, version)
    n_tensors = int(reader.unpack("<q", "the tensor count"))
    n_kv = int(reader.unpack("<q", "the metadata count"))
    left = reader.size - reader.pos
    if n_tensors < 0 or n_kv < 0 or n_kv * _MIN_KV + n_tensors * _MIN_TENSOR > left:
        raise reader.fail(
            f"the header claims {n_tensors:,} tensors and {n_kv:,} metadata entries, more "
            f"than the {reader.size:,}-byte file can hold; {CORRUPT}"
        )
    kinds: dict[str, int] = {}
    for index in range(n_kv):
        reader.where = f"metadata entry {index:,}"
        key = reader.text("the key")
        if not key:
            raise reader.fail("a metadata key is empty")
        reader.where = f"metadata key {shown(key)}"
        if key in kinds:
            raise reader.fail(
                f"the key {shown(key)} appears twice; readers disagree on which value counts"
            )
        kinds[key] = int(reader.unpack("<I", "the value type"))
        kv[key] = reader.value(kinds[key], "the value")
    return version, n_tensors, _alignment(reader, kv, kinds)


def _check_version(reader: Reader, version: int) -> None:
    if version & 0xFFFF == 0 and (version >> 24) in (2, 3):
        raise reader.fail(
            f"it is a big-endian GGUF (version {version >> 24}), made for "
            "big-endian machines; owl reads only little-endian files"
        )
    if version == 1:
        raise reader.fail(
            "it is GGUF version 1, which llama.cpp no longer reads; "
            "convert the model again with a current llama.cpp"
        )
    if version not in (2, 3):
        raise reader.fail(f"GGUF version {version:,} is not one owl knows (2 or 3)")


def _alignment(reader: Reader, kv: dict[str, Value], kinds: dict[str, int]) -> int:
    if ALIGNMENT_KEY not in kv:
        return DEFAULT_ALIGNMENT
    reader.where = f"metadata key {shown(ALIGNMENT_KEY)}"
    value = kv[ALIGNMENT_KEY]
    if kinds[ALIGNMENT_KEY] != 4 or not isinstance(value, int):
        kind = _TYPE_NAMES[kinds[ALIGNMENT_KEY]]
        raise reader.fail(f"the alignment must be a u32, not a {kind}")
    if value == 0 or value & (value - 1):
        raise reader.fail(f"the alignment {value:,} is not a power of two")
    return value


def read_tensor_info(reader: Reader, index: int) -> TensorInfo:
    """Read and check entry `index` of the tensor table (its shape, type and size)."""
    reader.where = f"tensor {index:,}"
    raw = reader.raw_string("the tensor name")
    if len(raw) >= MAX_NAME:
        raise reader.fail(
            f"the tensor name is {len(raw):,} bytes, longer than llama.cpp accepts ({MAX_NAME - 1})"
        )
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise reader.fail(f"the tensor name {raw[:40]!r} is not valid UTF-8") from None
    if "\0" in name:  # ggml keeps names as C strings: a NUL would cut them short
        raise reader.fail(f"the tensor name {shown(name)} contains a NUL byte")
    reader.where = f"tensor {shown(name)}"
    n_dims = int(reader.unpack("<I", "the dimension count"))
    if n_dims > MAX_DIMS:
        raise reader.fail(f"the tensor has {n_dims:,} dimensions; GGML allows {MAX_DIMS}")
    shape = tuple(int(reader.unpack("<q", f"dimension {dim}")) for dim in range(n_dims))
    if any(dim < 0 for dim in shape):
        raise reader.fail(f"the tensor has a negative dimension: {shape}")
    elements = 1
    for dim in shape:
        elements *= dim
    if elements >= INT64_MAX:
        raise reader.fail(f"the tensor's shape {shape} has more elements than GGML can count")
    kind = int(reader.unpack("<i", "the tensor type"))
    sizes = _type_sizes().get(kind)
    if sizes is None:
        raise reader.fail(f"the tensor has type {kind}, which is no GGML type owl knows")
    block, type_size = sizes
    row = shape[0] if shape else 1
    if row % block:
        raise reader.fail(
            f"the tensor's rows hold {row:,} values, not a multiple of "
            f"{type_name(kind)}'s block of {block}"
        )
    n_bytes = elements // block * type_size
    if n_bytes > SIZE_MAX:
        raise reader.fail(f"the tensor's shape {shape} needs more bytes than GGML can count")
    offset = int(reader.unpack("<Q", "the data offset"))
    return TensorInfo(name, shape, kind, offset, n_bytes)
