"""LoRA adapters in llama.cpp: loaded against a model, set on a context (all its sequences)."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import llama_cpp
from llama_cpp._internals import LlamaModel

from owl.engine.llama.context import Context
from owl.errors import EngineError


def apply_adapters(
    model: LlamaModel,
    context: Context,
    adapters: Sequence[tuple[Path, float]],
    handles: list[Any],
) -> None:
    """Load each (file, scale) into `handles` and set them all on `context`. EngineError when
    one does not load or apply; either way the caller frees `handles` after the context."""
    for path, _ in adapters:
        adapter = llama_cpp.llama_adapter_lora_init(model.model, str(path).encode())
        if not adapter:
            raise EngineError(
                f"llama.cpp could not load the LoRA adapter {path.name}: it is damaged, or "
                "made for another base model (its tensors do not match this one's)"
            )
        handles.append(adapter)
    if not handles:
        return
    count = len(handles)
    pointers = (llama_cpp.llama_adapter_lora_p_ctypes * count)(*handles)
    scales = (ctypes.c_float * count)(*(float(scale) for _, scale in adapters))
    if llama_cpp.llama_set_adapters_lora(context.ctx, pointers, count, scales) != 0:
        raise EngineError("llama.cpp could not apply the LoRA adapters to the context")


def free_adapters(handles: list[Any]) -> None:
    """Free adapters (after the context that used them)."""
    for adapter in handles:
        llama_cpp.llama_adapter_lora_free(adapter)
    handles.clear()
