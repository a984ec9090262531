"""The bounded reader pickletools.genops decodes from, and how a place in a pickle is named.

An OpStream is a window [start, end) of a seekable binary stream (a file, a zip member, a
decompressed joblib stream). Arguments longer than MAX_KEPT_ARGUMENT are stepped over by a
seek instead of read, so tensor bytes stored inline never reach memory, and protocol 0
lines are read up to MAX_LINE. Formats that put raw bytes between opcodes (joblib, torch's
tar) skip them with `skip`.
"""

from __future__ import annotations

from typing import BinaryIO

# Arguments longer than this are stepped over (seek), not read: no module name is that
# long, and it keeps tensor bytes stored inline (BINBYTES) out of memory.
MAX_KEPT_ARGUMENT = 64 * 1024
# Protocol 0 arguments end at a newline; a line longer than this is not read into memory.
MAX_LINE = 16 * 1024 * 1024


def location(where: str, offset: int) -> str:
    """The place of an opcode at `offset`, inside `where` (a zip member, say) if given."""
    return f"{where}, opcode offset {offset}" if where else f"opcode offset {offset}"


class _Stepped(bytes):
    """Stands in for an argument too long to keep: no content, but the length it had."""

    def __new__(cls, length: int) -> _Stepped:
        self = super().__new__(cls)
        self.length = length
        return self

    def __len__(self) -> int:
        return self.length


class OpStream:
    """What genops reads from: [start, end) of `raw`, long arguments stepped over."""

    def __init__(self, raw: BinaryIO, start: int, end: int) -> None:
        self._raw = raw
        self._pos = start
        self._end = end
        self.stepped = False  # the last argument was too long to keep
        self.long_line = False
        self.frame_end: int | None = None  # where the current pickle's last FRAME ends
        raw.seek(start)

    @property
    def raw(self) -> BinaryIO:
        return self._raw

    @property
    def end(self) -> int:
        return self._end

    def tell(self) -> int:
        return self._pos

    def skip(self, n: int) -> None:
        """Step over `n` bytes of raw data without reading them."""
        self._pos += n
        self._raw.seek(self._pos)

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        n = left if n is None or n < 0 else min(n, left)
        if n > MAX_KEPT_ARGUMENT:
            self._pos += n
            self._raw.seek(self._pos)
            self.stepped = True
            return _Stepped(n)
        data = self._raw.read(n)
        self._pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        data = self._raw.readline(min(self._end - self._pos, MAX_LINE))
        self._pos += len(data)
        self.long_line = len(data) == MAX_LINE and not data.endswith(b"\n")
        return data
