"""llama_model_quantize: the quantizer in the libllama of llama-cpp-python, with its log."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from owl.engine.llama.log import log_to


def _overrides(metadata: Sequence[tuple[str, str | int]]) -> Any:
    """llama_model_kv_override entries for `metadata`, with the zeroed terminator."""
    overrides = (llama_cpp.llama_model_kv_override * (len(metadata) + 1))()
    for override, (key, value) in zip(overrides, metadata, strict=False):
        override.key = key.encode()
        if isinstance(value, int):
            override.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_INT
            override.value.val_i64 = value
        else:
            override.tag = llama_cpp.LLAMA_KV_OVERRIDE_TYPE_STR
            override.value.val_str = value.encode()[:127].decode("utf-8", "ignore").encode()
    return overrides


def quantize_model(
    src: Path,
    dst: Path,
    *,
    ftype: int,
    threads: int,
    imatrix: Mapping[str, np.ndarray] | None,
    metadata: Sequence[tuple[str, str | int]] = (),
    on_line: Callable[[int, str], None],
) -> int:
    """Quantize `src` into `dst` as `ftype` (a LLAMA_FTYPE_*), weighing rounding errors by
    `imatrix` (per weight, the mean square of each input column) and writing `metadata`
    into the file; llama.cpp's log lines go to `on_line` meanwhile. Its status (0: done).

    Blocks; one quantization runs at a time in a process (the log is process-wide).
    """
    params = llama_cpp.llama_model_quantize_default_params()
    params.nthread = threads
    params.ftype = ftype
    params.allow_requantize = True
    keep: list[Any] = []  # what the C side points into must live as long as the call
    if imatrix is not None:
        names = [name.encode() for name in imatrix]
        arrays = [np.ascontiguousarray(array, dtype=np.float32) for array in imatrix.values()]
        entries = (llama_cpp.llama_model_imatrix_data * (len(names) + 1))()  # NULL-terminated
        for entry, name, array in zip(entries, names, arrays, strict=False):
            entry.name = name
            entry.data = array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entry.size = array.size
        params.imatrix = entries
        keep += [names, arrays, entries]
    if metadata:
        params.kv_overrides = overrides = _overrides(metadata)
        keep.append(overrides)
    with log_to(on_line):
        try:
            return int(
                llama_cpp.llama_model_quantize(
                    os.fsencode(src), os.fsencode(dst), ctypes.byref(params)
                )
            )
        finally:
            keep.clear()
