"""Check a SentencePiece model (`tokenizer.model`): a serialized protobuf ModelProto.

The file holds no code: pieces with scores and types, the trainer's settings and the
normalizer's rules. The risk is the reader. `sentencepiece` parses it in native code, and
its normalizer walks the `precompiled_charsmap` blob (a double-array trie and the strings
it points at) as it finds it. So owl walks the protobuf wire format itself, against the
schema of sentencepiece_model.proto: every varint at most 10 bytes, every length inside the
buffer and inside its message, nesting fixed by the schema (three levels, no recursion), a
bounded number of pieces, piece strings valid UTF-8, enums in range, and what the loader
itself demands of the pieces (non-empty, no NUL, finite scores, unique, one <unk>, an ordinary
one, well-formed byte pieces, all 256 of them when byte_fallback is on). A file that parses
is clean; anything else is unverified, with the byte offset where it broke. Owl may refuse
what the loader would take (it reads no piece that is not UTF-8), never the other way round.

Why not a library: `sentencepiece` (owl[convert], not core) is the native parser this
guards; `protobuf` is not a core dependency, and it would need the generated schema module
that ships inside `sentencepiece`. The wire format is small enough to read here in Python.
The charsmap is checked as sentencepiece (0.2.3) checks it on load: the trie's size leaves
room for the strings and is whole 1,024-byte blocks, the strings end with a NUL, and every
unit of the trie, reached or not, keeps the normalizer's reads inside the trie and the
strings (see `_trie`). A self-test section (field 4) is parsed but not run, as the loader
would.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from owl.scan.findings import Finding, Unverified

MAX_BYTES = 64 << 20  # the largest real models (256k pieces) are under 5 MB
MAX_PIECES = 1 << 21
MAX_VARINT = 10
MAX_FIELD = (1 << 29) - 1
VARINT, I64, LEN, I32 = 0, 1, 2, 5
PIECE_TYPES = {1: "NORMAL", 2: "UNKNOWN", 3: "CONTROL", 4: "USER_DEFINED", 5: "UNUSED", 6: "BYTE"}
MODEL_TYPES = range(1, 5)  # UNIGRAM, BPE, WORD, CHAR
_UNKNOWN, _BYTE = 2, 6
_ORDINARY = (1, 4, 5)  # NORMAL, USER_DEFINED, UNUSED
_HEX = set("0123456789ABCDEF")
_BYTES = 256  # byte pieces a byte_fallback model has: one for each byte, each once
_CORRUPT = "the file is truncated or corrupt: download it again"

Field = tuple[int, int, int, int, int]  # number, wire type, offset of its tag, value or start, end


class _Broken(Exception):
    """Where and why the wire format broke; the scan turns it into Unverified."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset, self.reason = offset, reason


def _varint(data: bytes, pos: int, end: int) -> tuple[int, int]:
    """The varint at `pos` and the offset after it."""
    value = 0
    for index in range(MAX_VARINT):
        if pos + index >= end:
            raise _Broken(pos, f"a varint runs past the end of its message; {_CORRUPT}")
        byte = data[pos + index]
        if index == MAX_VARINT - 1 and byte > 1:
            raise _Broken(pos, f"a varint is longer than {MAX_VARINT} bytes or 64 bits")
        value |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            return value, pos + index + 1
    raise AssertionError("unreachable: the tenth byte ends the varint or raises")


def _fields(data: bytes, start: int, end: int) -> Iterator[Field]:
    """The fields of the message in data[start:end], each checked to lie inside it."""
    pos = start
    while pos < end:
        tag_at = pos
        tag, pos = _varint(data, pos, end)
        number, wire = tag >> 3, tag & 7
        if not 1 <= number <= MAX_FIELD:
            raise _Broken(tag_at, f"field number {number} is not a protobuf field number")
        if wire == VARINT:
            value, pos = _varint(data, pos, end)
            yield number, wire, tag_at, value, pos
        elif wire in (I64, I32):
            width = 8 if wire == I64 else 4
            if pos + width > end:
                raise _Broken(tag_at, f"field {number} runs past the end; {_CORRUPT}")
            yield number, wire, tag_at, pos, pos + width
            pos += width
        elif wire == LEN:
            length, pos = _varint(data, pos, end)
            if length > end - pos:
                raise _Broken(
                    tag_at,
                    f"field {number} claims {length:,} bytes but its message has {end - pos:,} "
                    f"left; {_CORRUPT}",
                )
            yield number, wire, tag_at, pos, pos + length
            pos += length
        else:  # groups (3, 4) are not in the schema; 6 and 7 are not wire types at all
            raise _Broken(tag_at, f"field {number} has wire type {wire}, which no writer uses here")


# Each message's known fields: number -> (wire type, what the value must be).
STRING, BYTES, BOOL, INT, FLOAT, MODEL_TYPE, PIECE_TYPE = range(7)
_SCALAR = {STRING: LEN, BYTES: LEN, BOOL: VARINT, INT: VARINT, FLOAT: I32}
_TRAINER = {
    **dict.fromkeys((1, 2, 5, 7, 30, 31, 36, 44, 45, 46, 47, 48, 53, 54), STRING),
    **dict.fromkeys((4, 6, 11, 12, 13, 14, 16, 17, 18, 20, 40, 41, 42, 43, 52), INT),
    **dict.fromkeys((10, 15, 51), FLOAT),
    **dict.fromkeys((19, 21, 22, 23, 24, 25, 26, 32, 33, 34, 35, 49, 50, 55), BOOL),
    3: MODEL_TYPE,
}
_NORMALIZER = {1: STRING, 2: BYTES, 3: BOOL, 4: BOOL, 5: BOOL, 6: STRING}
_SAMPLE = {1: STRING, 2: STRING}
_PIECE = {1: STRING, 2: FLOAT, 3: PIECE_TYPE}
_NORMALIZER_NAMES = {3: "normalizer_spec", 5: "denormalizer_spec"}
_CHARSMAP = 2
_BYTE_FALLBACK = 35
_BLOCK = 1024  # bytes in 256 trie units: the loader takes tries in whole blocks


def _wire_of(kind: int) -> int:
    return VARINT if kind in (MODEL_TYPE, PIECE_TYPE) else _SCALAR[kind]


def _scalars(
    data: bytes, start: int, end: int, schema: dict[int, int], *, name: str, strict: bool
) -> dict[int, Field]:
    """The last value of each known field of a flat message; unknown fields are refused
    (`strict`) or skipped once their bytes are checked (newer trainers add settings)."""
    seen: dict[int, Field] = {}
    for field in _fields(data, start, end):
        number, wire, tag_at, value, _ = field
        kind = schema.get(number)
        if kind is None:
            if strict:
                raise _Broken(tag_at, f"{name} has no field {number}")
            continue
        if wire != _wire_of(kind):
            raise _Broken(
                tag_at, f"{name} field {number} has wire type {wire}, not {_wire_of(kind)}"
            )
        if kind == MODEL_TYPE and value not in MODEL_TYPES:
            raise _Broken(tag_at, f"model type {value} is not one sentencepiece knows")
        if kind == PIECE_TYPE and value not in PIECE_TYPES:
            raise _Broken(tag_at, f"piece type {value} is not one sentencepiece knows")
        seen[number] = field
    return seen


def _utf8(data: bytes, start: int, end: int, *, what: str) -> str:
    try:
        return data[start:end].decode("utf-8")
    except UnicodeDecodeError as err:
        raise _Broken(start + err.start, f"{what} is not valid UTF-8") from None


def _piece(data: bytes, start: int, end: int, *, index: int) -> tuple[str, int]:
    """The text and type of one SentencePiece message."""
    fields = _scalars(data, start, end, _PIECE, name=f"piece {index}", strict=True)
    if 1 not in fields:
        raise _Broken(start, f"piece {index} has no text")
    _, _, tag_at, text_start, text_end = fields[1]
    text = _utf8(data, text_start, text_end, what=f"piece {index}")
    if not text:
        raise _Broken(tag_at, f"piece {index} is empty, which sentencepiece refuses")
    if "\0" in text:
        raise _Broken(tag_at, f"piece {index} holds a NUL character, which sentencepiece refuses")
    if 2 in fields:
        (score,) = struct.unpack_from("<f", data, fields[2][3])
        if not math.isfinite(score):
            raise _Broken(
                fields[2][2], f"piece {index}'s score is {score}, which sentencepiece refuses"
            )
    kind = fields[3][3] if 3 in fields else 1
    return text, kind


def _is_byte_piece(text: str) -> bool:
    return len(text) == 6 and text[:3] == "<0x" and text[5] == ">" and set(text[3:5]) <= _HEX


def _charsmap(data: bytes, start: int, end: int) -> None:
    """The framing the normalizer demands: a little-endian trie size, the trie's 32-bit
    units in whole 256-unit blocks, then strings that end with a NUL (at least that one)."""
    if start == end:
        return
    if end - start <= 4:
        raise _Broken(start, "the precompiled charsmap is too short to hold a trie")
    (trie,) = struct.unpack_from("<I", data, start)
    if trie >= end - start - 4:
        raise _Broken(
            start,
            f"the charsmap's trie claims {trie:,} bytes of {end - start - 4:,}, leaving none "
            f"for its strings; {_CORRUPT}",
        )
    if data[end - 1] != 0:
        raise _Broken(end - 1, "the charsmap's strings do not end with a NUL")
    if trie < _BLOCK or trie % _BLOCK:
        raise _Broken(
            start,
            f"the charsmap's trie has {trie:,} bytes, not whole blocks of {_BLOCK:,}; {_CORRUPT}",
        )
    units = np.frombuffer(data, dtype="<u4", count=trie // 4, offset=start + 4)  # no copy
    _trie(units, strings=end - start - 4 - trie, at=start + 4)


def _trie(units: np.ndarray, *, strings: int, at: int) -> None:
    """Every unit of the double-array trie is one the normalizer can follow, reached or not.

    A unit is a leaf (top bit set: a value, an offset into the strings) or a node (a label,
    a has-leaf bit and an offset to its block of 256 children). darts-clone reads
    units[block ^ byte] for any input byte before it checks the label, and reads the leaf of
    a node that has one at units[block]; the loader checks every unit so that these reads
    stay inside the trie: each node's block starts inside it (whole blocks, so it ends inside
    too), each node with a leaf has a leaf unit there, each leaf points inside the strings,
    and the root is a plain node (label 0, no leaf) with children elsewhere.
    """
    offsets = (units >> 10) << ((units & (1 << 9)) >> 6)
    blocks = np.arange(len(units), dtype=np.uint32) ^ offsets  # like the units, 32 bits wide
    leaf = units >> 31 == 1
    if units[0] & 0x800001FF or offsets[0] == 0 or blocks[0] >= len(units):
        raise _Broken(at, f"the charsmap's trie has a broken root; {_CORRUPT}")
    _refuse(leaf & ((units & 0x7FFFFFFF) >= strings), at, "a leaf points past its strings")
    node = ~leaf
    _refuse(node & (blocks >= len(units)), at, "a node's children lie outside it")
    has_leaf = node & ((units >> 8) & 1 == 1)
    _refuse(has_leaf & ~leaf[np.where(has_leaf, blocks, 0)], at, "a node's leaf is not a leaf")


def _refuse(bad: np.ndarray, at: int, what: str) -> None:
    """Raise at the first unit where `bad` holds."""
    if bad.any():
        unit = int(np.argmax(bad))
        raise _Broken(at + 4 * unit, f"in the charsmap's trie, {what} (unit {unit:,}); {_CORRUPT}")


def _normalizer(data: bytes, start: int, end: int, *, name: str) -> None:
    fields = _scalars(data, start, end, _NORMALIZER, name=name, strict=False)
    if _CHARSMAP in fields:
        _charsmap(data, fields[_CHARSMAP][3], fields[_CHARSMAP][4])


def _self_test(data: bytes, start: int, end: int) -> None:
    for number, wire, tag_at, sample_start, sample_end in _fields(data, start, end):
        if number == 1:
            if wire != LEN:
                raise _Broken(tag_at, f"a self-test sample has wire type {wire}, not {LEN}")
            _scalars(
                data, sample_start, sample_end, _SAMPLE, name="a self-test sample", strict=False
            )


def _model(data: bytes) -> None:
    """Walk the whole ModelProto."""
    pieces = _Pieces()
    byte_fallback = False
    for number, wire, tag_at, start, end in _fields(data, 0, len(data)):
        if not 1 <= number <= 5:
            raise _Broken(tag_at, f"a SentencePiece model has no field {number}")
        if wire != LEN:
            raise _Broken(tag_at, f"field {number} has wire type {wire}, not {LEN}")
        if number == 1:
            if len(pieces.seen) == MAX_PIECES:
                raise _Broken(tag_at, f"the model has more than {MAX_PIECES:,} pieces")
            pieces.add(tag_at, *_piece(data, start, end, index=len(pieces.seen)))
        elif number == 2:
            trainer = _scalars(data, start, end, _TRAINER, name="trainer_spec", strict=False)
            byte_fallback = _BYTE_FALLBACK in trainer and trainer[_BYTE_FALLBACK][3] != 0
        elif number in (3, 5):
            _normalizer(
                data, start, end, name="normalizer_spec" if number == 3 else "denormalizer_spec"
            )
        else:
            _self_test(data, start, end)
    pieces.finish(byte_fallback=byte_fallback)


def looks_like_sentencepiece(data: bytes) -> bool:
    """Whether `data` (a file's bytes, perhaps cut short) starts as a SentencePiece model.

    The first field must be a whole piece; every whole field after it must be one of the
    model's five, length-delimited. A file that ends inside a field still counts (the
    checker then says where it was cut); one with any other field does not.
    """
    if data[:1] != b"\x0a":
        return False
    pos, first = 0, True
    try:
        while pos < len(data):
            tag, after = _varint(data, pos, len(data))
            if tag & 7 != LEN or not 1 <= tag >> 3 <= 5:
                return False
            length, after = _varint(data, after, len(data))
            if length > len(data) - after:
                return not first
            if first:
                _piece(data, after, after + length, index=0)
                first = False
            pos = after + length
    except _Broken as err:
        return not first and err.reason.endswith(_CORRUPT)
    return not first


class _Pieces:
    """What the loader demands of the pieces as a whole."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.unknown = -1
        self.byte_pieces: list[tuple[int, str]] = []
        self.ordinary = 0  # pieces the model segments with, as opposed to reserved ones

    def add(self, tag_at: int, text: str, kind: int) -> None:
        index = len(self.seen)
        if text in self.seen:
            raise _Broken(tag_at, f"piece {index} {text[:40]!r} repeats piece {self.seen[text]}")
        self.seen[text] = index
        self.ordinary += kind in _ORDINARY
        if kind == _UNKNOWN:
            if self.unknown >= 0:
                raise _Broken(tag_at, f"piece {index} is a second unknown piece")
            self.unknown = index
        if kind == _BYTE:
            if not _is_byte_piece(text):
                raise _Broken(tag_at, f"byte piece {index} {text[:40]!r} is not <0xXX>")
            self.byte_pieces.append((tag_at, text))

    def finish(self, *, byte_fallback: bool) -> None:
        if not self.ordinary:
            raise _Broken(0, "the model has no ordinary pieces, which sentencepiece refuses")
        if self.unknown < 0:
            raise _Broken(0, "the model has no unknown piece, which sentencepiece refuses")
        if self.byte_pieces and not byte_fallback:
            tag_at, text = self.byte_pieces[0]
            raise _Broken(tag_at, f"byte piece {text!r} is there although byte_fallback is off")
        if byte_fallback and len(self.byte_pieces) != _BYTES:
            raise _Broken(
                0,
                f"byte_fallback is on but the model has {len(self.byte_pieces)} of the {_BYTES} "
                "byte pieces <0x00>..<0xFF>, which sentencepiece refuses",
            )


def scan_sentencepiece(path: Path, *, file: str) -> list[Finding]:
    """Check the SentencePiece model at `path` (called `file` in findings).

    Returns no findings when the whole file is a well-formed ModelProto (it holds no code);
    raises Unverified, naming the byte offset, when it is not.
    """
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise Unverified(
                f"the file has {size:,} bytes; owl reads SentencePiece models of at most "
                f"{MAX_BYTES:,}",
                location="file",
            )
        data = path.read_bytes()
    except OSError as err:
        raise Unverified(f"cannot read it: {err}") from err
    try:
        _model(data)
    except _Broken as err:
        raise Unverified(err.reason, location=f"byte {err.offset:,}") from None
    return []
