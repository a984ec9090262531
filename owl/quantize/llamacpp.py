"""The call into llama.cpp: `llama_model_quantize` from the libllama in llama-cpp-python.

llama.cpp reports through its process-wide log callback: while it quantizes, owl sets its
own, which turns the per-tensor lines into progress and keeps the error lines for the
reason of a failure (and keeps llama.cpp's chatter off the terminal).
"""

from __future__ import annotations

import ctypes
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from owl.quantize.imatrix import Imatrix

Progress = Callable[[int, int | None], None]

# The log callback is one per process: one quantization at a time may set it.
_QUANTIZER = threading.Lock()
_LOG_ERROR, _LOG_CONT = 4, 5  # ggml_log_level
_TENSOR_LINE = re.compile(r"^\[\s*(\d+)/\s*(\d+)\]")


class _LlamaLog:
    """Catches llama.cpp's log while it quantizes: tensor lines give progress, errors the reason."""

    def __init__(self, progress: Progress | None) -> None:
        import llama_cpp

        self.progress = progress
        self.errors: list[str] = []
        self._level = 0
        self.callback = llama_cpp.llama_log_callback(self._on_log)

    def _on_log(self, level: int, text: bytes | None, _user_data: Any) -> None:
        try:  # nothing may unwind into C
            line = (text or b"").decode("utf-8", "replace")
            self._level = self._level if level == _LOG_CONT else level
            if self._level >= _LOG_ERROR and line.strip():
                self.errors.append(line.strip())
            match = _TENSOR_LINE.match(line)
            if match and self.progress is not None:
                self.progress(int(match[1]), int(match[2]))
        except Exception:
            pass

    def reason(self) -> str:
        for line in reversed(self.errors):
            if "failed to quantize:" in line:
                return line.split("failed to quantize:", 1)[1].strip()
        return self.errors[-1].strip("= \n") if self.errors else "llama.cpp gave no reason"


def _kv_overrides(llama_cpp: Any, matrix: Imatrix) -> Any:
    """The keys llama-quantize writes into a GGUF made with an importance matrix."""
    entries: list[tuple[str, str | int]] = [
        ("quantize.imatrix.file", matrix.filename),
        ("quantize.imatrix.entries_count", len(matrix.values)),
    ]
    if matrix.datasets:
        entries.append(("quantize.imatrix.dataset", matrix.datasets[0]))
    if matrix.chunks:
        entries.append(("quantize.imatrix.chunks_count", matrix.chunks))
    overrides = (llama_cpp.llama_model_kv_override * (len(entries) + 1))()  # zeroed terminator
    for override, (key, value) in zip(overrides, entries, strict=False):
        override.key = key.encode()
        if isinstance(value, int):
            override.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
            override.value.val_i64 = value
        else:
            override.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            override.value.val_str = value.encode()[:127].decode("utf-8", "ignore").encode()
    return overrides


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
    import llama_cpp
    import llama_cpp._logger

    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = ftype
    params.allow_requantize = True
    keep: list[Any] = []  # what the C side points into must live as long as the call
    if matrix is not None:
        names = [name.encode() for name in matrix.values]
        arrays = [np.ascontiguousarray(array, dtype=np.float32) for array in matrix.values.values()]
        entries = (llama_cpp.llama_model_imatrix_data * (len(names) + 1))()  # NULL-terminated
        for entry, name, array in zip(entries, names, arrays, strict=False):
            entry.name = name
            entry.data = array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entry.size = array.size
        params.imatrix = entries
        params.kv_overrides = overrides = _kv_overrides(llama_cpp, matrix)
        keep += [names, arrays, entries, overrides]
    log = _LlamaLog(progress)
    outcome: list[Any] = []

    def work() -> None:
        with _QUANTIZER:
            llama_cpp.llama_log_set(log.callback, ctypes.c_void_p(0))
            try:
                outcome.append(
                    llama_cpp.llama_model_quantize(
                        os.fsencode(src), os.fsencode(dst), ctypes.byref(params)
                    )
                )
            except BaseException as err:  # handed to the waiting thread
                outcome.append(err)
            finally:
                llama_cpp.llama_log_set(llama_cpp._logger.llama_log_callback, ctypes.c_void_p(0))
                keep.clear()

    worker = threading.Thread(target=work, name="owl-quantize", daemon=True)
    worker.start()
    worker.join()
    result = outcome[0] if outcome else None
    if isinstance(result, BaseException):
        raise result
    return None if result == 0 else log.reason()
