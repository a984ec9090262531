"""llama.cpp's log: silenced but for errors, or caught while one call runs.

llama.cpp logs through one process-wide callback. llama-cpp-python routes it to the
"llama-cpp-python" logger at every level — a thousand lines per context — until that logger
gets a level; `quiet` gives it one. A caller that wants the lines themselves (the quantizer:
progress and the reason of a failure) sets its own callback for a block with `log_to`.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

LOG_ERROR, LOG_CONT = 4, 5  # ggml_log_level: an error line, and a line continuing the last

# The callback is one per process: one `log_to` block at a time may set it.
_LOG = threading.Lock()


def quiet() -> None:
    """Only llama.cpp's errors reach stderr (what Llama(verbose=False) does)."""
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)


@contextmanager
def log_to(on_line: Callable[[int, str], None]) -> Iterator[None]:
    """Hand llama.cpp's log lines (level, text) to `on_line` while the block runs, then give
    the log back to llama-cpp-python. Blocks of several threads take turns."""
    import llama_cpp
    import llama_cpp._logger

    def forward(level: int, text: bytes | None, _user_data: Any) -> None:
        try:  # nothing may unwind into C
            on_line(level, (text or b"").decode("utf-8", "replace"))
        except Exception:
            pass

    callback = llama_cpp.llama_log_callback(forward)  # kept alive by this frame
    with _LOG:
        llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))
        try:
            yield
        finally:
            llama_cpp.llama_log_set(llama_cpp._logger.llama_log_callback, ctypes.c_void_p(0))
