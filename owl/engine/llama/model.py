"""Load a GGUF model file into llama.cpp (weights mmapped, shared through the page cache)."""

from __future__ import annotations

from pathlib import Path

import llama_cpp
from llama_cpp._internals import LlamaModel

from owl.engine.llama.log import quiet
from owl.errors import EngineError, OwlError


def load_model(
    path: Path, *, name: str | None = None, error: type[OwlError] = EngineError
) -> LlamaModel:
    """The model in `path`; `error` (EngineError by default) when llama.cpp cannot load it.

    `name` names the model in that message (default: the file's name).
    """
    quiet()
    llama_cpp.llama_backend_init()
    try:
        return LlamaModel(
            path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=False
        )
    except (ValueError, RuntimeError, OSError) as err:
        raise error(
            f"llama.cpp could not load {name or path.name} ({err}); the file may be damaged, "
            "have no vocabulary, or be of an architecture this llama.cpp does not support: "
            "check it with `owl show`"
        ) from err


def embedding_width(model: LlamaModel) -> int:
    """The length of the model's output vectors (its pooled embeddings)."""
    return int(llama_cpp.llama_model_n_embd_out(model.model) or model.n_embd())
