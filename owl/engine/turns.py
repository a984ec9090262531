"""One call at a time, the rest waiting their turn, counted for the pool: how the speech
backends (Whisper, Piper, CTC) run, since each already spreads one call over every thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from owl.engine.backend import Occupancy


class Turns:
    """`waiting()` counts a call from the moment it arrives; `turn()` holds the one run."""

    def __init__(self) -> None:
        self.run = threading.Lock()  # held by the call that runs, and by close()
        self._count = threading.Lock()
        self._calls = 0  # calls under way: one running, the rest waiting for `run`

    def occupancy(self) -> Occupancy:
        with self._count:
            calls = self._calls
        return Occupancy(1, min(calls, 1), max(calls - 1, 0))

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Counts the call as under way (waiting or running) for as long as it lasts."""
        with self._count:
            self._calls += 1
        try:
            yield
        finally:
            with self._count:
                self._calls -= 1

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Counts the call and runs it once no other runs."""
        with self.waiting(), self.run:
            yield
