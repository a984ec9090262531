"""The call into llama.cpp's quantizer (owl/engine/llama/quantizer.py), on a worker thread.

llama.cpp reports through its process-wide log: while it quantizes, owl takes it, turns the
per-tensor lines into progress and keeps the error lines for the reason of a failure (and
keeps llama.cpp's chatter off the terminal).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from owl.engine.llama.log import LOG_CONT, LOG_ERROR
from owl.quantize.imatrix import Imatrix

Progress = Callable[[int, int | None], None]

_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]")


class _LlamaLog:
    """Catches llama.cpp's log while it quantizes: tensor lines give progress, errors the reason."""

    def __init__(self, progress: Progress | None) -> None:
        self.progress = progress
        self.errors: list[str] = []
        self._level = 0

    def on_line(self, level: int, line: str) -> None:
        self._level = self._level if level == LOG_CONT else level
        if self._level >= LOG_ERROR and line.strip():
            self.errors.append(line.strip())
        match = _TENSOR_LINE.match(line)
        if match and self.progress is not None:
            self.progress(int(match[1]), int(match[2]))

    def reason(self) -> str:
        for line in reversed(self.errors):
            if "failed to quantize:" in line:
                return line.split("failed to quantize:", 1)[1].strip()
        return self.errors[-1].strip("= \n") if self.errors else "llama.cpp gave no reason"


def _imatrix_metadata(matrix: Imatrix) -> list[tuple[str, str | int]]:
    """The keys llama-quantize writes into a GGUF made with an importance matrix."""
    entries: list[tuple[str, str | int]] = [
        ("quantize.imatrix.file", matrix.filename),
        ("quantize.imatrix.entries_count", len(matrix.values)),
    ]
    if matrix.datasets:
        entries.append(("quantize.imatrix.dataset", matrix.datasets[0]))
    if matrix.chunks:
        entries.append(("quantize.imatrix.chunks_count", matrix.chunks))
    return entries


def run_quantizer(
    src: Path,
    dst: Path,
    *,
    ftype: int,
    threads: int,
    matrix: Imatrix | None,
    progress: Progress | None,
) -> str | None:
    """llama_model_quantize(src → dst): None when it worked, else llama.cpp's reason.

    The C call runs on a worker thread while this one waits, so that Ctrl-C is felt at once:
    the caller then removes the temp file, and the worker (a daemon) ends with the process.
    """
    from owl.engine.llama.quantizer import quantize_model

    log = _LlamaLog(progress)
    outcome: list[Any] = []

    def work() -> None:
        try:
            outcome.append(
                quantize_model(
                    src,
                    dst,
                    ftype=ftype,
                    threads=threads,
                    imatrix=matrix.values if matrix is not None else None,
                    metadata=_imatrix_metadata(matrix) if matrix is not None else (),
                    on_line=log.on_line,
                )
            )
        except BaseException as err:  # handed to the waiting thread
            outcome.append(err)

    worker = threading.Thread(target=work, name="owl-quantize", daemon=True)
    worker.start()
    worker.join()
    result = outcome[0] if outcome else None
    if isinstance(result, BaseException):
        raise result
    return None if result == 0 else log.reason()
