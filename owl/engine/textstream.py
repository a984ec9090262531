"""From generated token bytes to text deltas: UTF-8 reassembly and stop strings.

A token may end inside a multi-byte character, and a stop string may span tokens, so
text that could still turn into a stop string is held back until it cannot.
"""

from __future__ import annotations

import codecs


class TextStream:
    """Feed token bytes with `push`; emit what is safe to show; `flush` at the end."""

    def __init__(self, stop: tuple[str, ...] | list[str] = ()) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stop = [item for item in stop if item]
        self._pending = ""
        self.stopped = False
        self.matched: str | None = None  # the stop string that stopped it

    def _held_back(self) -> int:
        """Length of the longest tail of pending text that begins some stop string."""
        longest = 0
        for stop in self._stop:
            for size in range(min(len(stop) - 1, len(self._pending)), longest, -1):
                if self._pending.endswith(stop[:size]):
                    longest = size
                    break
        return longest

    def push(self, data: bytes) -> str:
        """Add a token's bytes; return the text now safe to emit. Sets `stopped` and `matched`."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(data)
        found = [(at, stop) for stop in self._stop if (at := self._pending.find(stop)) >= 0]
        if found:
            cut, self.matched = min(found, key=lambda item: item[0])
            self.stopped = True
            text, self._pending = self._pending[:cut], ""
            return text
        keep = self._held_back()
        text = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        return text

    def flush(self) -> str:
        """The text held back when generation ended without a stop string."""
        if self.stopped:
            return ""
        text = self._pending + self._decoder.decode(b"", final=True)
        self._pending = ""
        return text
