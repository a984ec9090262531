"""The protobuf wire format, read from a file handle: what it skips is never read.

An ONNX file is one protobuf message whose tensors can be gigabytes of `raw_data` inside
it, so the reader keeps a small window of the file and seeks past every field it does not
look into. It is stricter than protobuf itself, never looser: groups (wire types 3 and 4,
which ONNX never writes) and the unused wire types 6 and 7 are refused, a varint longer
than 10 bytes or wider than 64 bits too, and every length must fit inside its message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import BinaryIO

from owl.errors import ModelFormatError

VARINT, I64, LEN, I32 = 0, 1, 2, 5
MAX_VARINT = 10
MAX_FIELD = (1 << 29) - 1
MAX_TEXT = 64 << 10  # the longest name, domain or path owl reads into memory
_WINDOW = 1 << 16
_CORRUPT = "the file is truncated or corrupt: download it again"
_CONTINUATION = bytes(range(0x80, 0x100))
# A packed run of varints is broken when 10 bytes in a row carry on, or when a 10th byte
# sets bits past the 64th.
_BAD_PACKED = re.compile(rb"[\x80-\xff]{10}|[\x80-\xff]{9}[\x02-\x7f]")

Field = tuple[int, int, int]  # number, wire type, value (a varint, or the length of a LEN)


class Wire:
    """A cursor over `handle` (of `size` bytes); `pos` is the offset in the file."""

    def __init__(self, handle: BinaryIO, size: int, *, max_fields: int = 1 << 62) -> None:
        self.handle = handle
        self.size = size
        self.pos = 0
        self.count = 0  # fields read so far, bounded so that a hostile file costs bounded time
        self.max_fields = max_fields
        self._buffer = b""
        self._base = 0  # the file offset of _buffer[0]

    def _view(self, count: int) -> tuple[bytes, int]:
        """The buffer holding [pos, pos + count) (or up to the end), and pos's index in it."""
        start = self.pos - self._base
        if start < 0 or start + count > len(self._buffer):
            self.handle.seek(self.pos)
            self._buffer = self.handle.read(max(count, _WINDOW))
            self._base, start = self.pos, 0
        return self._buffer, start

    def varint(self, end: int) -> int:
        pos, buffer = self.pos, self._buffer
        index = pos - self._base
        if index < 0 or index + MAX_VARINT > len(buffer):
            buffer, index = self._view(MAX_VARINT)
        # The bytes this varint may use: inside its message, the file and 10 bytes.
        limit = min(end - pos, len(buffer) - index, MAX_VARINT)
        if limit > 0 and buffer[index] < 0x80:  # most tags and lengths: one byte
            self.pos = pos + 1
            return buffer[index]
        value, used = 0, 0
        while True:
            if used >= limit:
                if used == MAX_VARINT:
                    break
                raise ModelFormatError(
                    f"a varint at byte {pos:,} runs past the end of its message; {_CORRUPT}"
                )
            byte = buffer[index + used]
            value |= (byte & 0x7F) << (7 * used)
            used += 1
            if byte < 0x80:
                if used < MAX_VARINT or byte <= 1:
                    self.pos = pos + used
                    return value
                break
        raise ModelFormatError(
            f"the varint at byte {pos:,} is longer than {MAX_VARINT} bytes or wider than 64 bits"
        )

    def fields(self, end: int) -> Iterator[Field]:
        """The fields from `pos` to `end`; after each one, `pos` moves past it, whatever the
        caller read of it (so a LEN field the caller does not open is skipped unread)."""
        while self.pos < end:
            self.count += 1
            if self.count > self.max_fields:
                raise ModelFormatError(f"the file has more than {self.max_fields:,} fields")
            at = self.pos
            tag = self.varint(end)
            number, wire = tag >> 3, tag & 7
            if not 1 <= number <= MAX_FIELD:
                raise ModelFormatError(f"byte {at:,} holds field number {number}, which is none")
            if wire == VARINT:
                yield number, wire, self.varint(end)
            elif wire in (I64, I32, LEN):
                length = self.varint(end) if wire == LEN else 8 if wire == I64 else 4
                start = self.pos
                if length > end - start:
                    raise ModelFormatError(
                        f"field {number} at byte {at:,} claims {length:,} bytes but its message "
                        f"has {end - start:,} left; {_CORRUPT}"
                    )
                yield number, wire, length
                self.pos = start + length
            else:  # groups (3, 4) were never part of ONNX; 6 and 7 are no wire types at all
                raise ModelFormatError(
                    f"field {number} at byte {at:,} has wire type {wire}, which ONNX never writes"
                )

    def text(self, length: int, *, what: str) -> str:
        """The `length` bytes at `pos` as UTF-8 (protobuf does not check; owl does)."""
        if length > MAX_TEXT:
            raise ModelFormatError(f"{what} has {length:,} bytes (owl reads at most {MAX_TEXT:,})")
        buffer, index = self._view(length)
        raw = buffer[index : index + length]
        if len(raw) != length:
            raise ModelFormatError(f"the file ends inside {what}; {_CORRUPT}")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ModelFormatError(f"{what} at byte {self.pos:,} is not UTF-8") from None

    def packed(self, length: int, width: int, *, what: str) -> None:
        """Check a packed repeated field of `length` bytes at `pos`: whole fixed-width numbers
        (`width` 4 or 8), or whole varints (`width` 0), which protobuf parses and refuses."""
        if width:
            if length % width:
                raise ModelFormatError(
                    f"{what} at byte {self.pos:,} has {length:,} bytes, not whole {width}-byte "
                    "numbers"
                )
            return
        carry, left, start = b"", length, self.pos
        self.handle.seek(start)
        while left:
            chunk = self.handle.read(min(left, 1 << 20))
            if not chunk:
                raise ModelFormatError(f"the file ends inside {what}; {_CORRUPT}")
            left -= len(chunk)
            data = carry + chunk
            if _BAD_PACKED.search(data):
                raise ModelFormatError(f"{what} at byte {start:,} holds a broken varint")
            carry = data[len(data.rstrip(_CONTINUATION)) :]
        if carry:
            raise ModelFormatError(f"{what} at byte {start:,} ends inside a varint; {_CORRUPT}")
