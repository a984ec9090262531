"""The engine: load a stored model into a backend and generate from it.

Backends register by model format: llama.cpp for GGUF (the default), transformers for
Hugging Face safetensors folders (families llama.cpp cannot run), imported only when used.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from owl.config import Settings
from owl.engine.backend import Backend
from owl.engine.model import Delta, Model, Usage
from owl.engine.sampling import SamplingParams
from owl.errors import EngineError
from owl.store import Manifest, Store


def _llamacpp(path: Path, *, n_ctx: int, threads: int, slots: int = 1) -> Backend:
    from owl.engine.llamacpp import LlamaCppBackend

    return LlamaCppBackend(path, n_ctx=n_ctx, threads=threads, slots=slots)


# What the transformers backend needs beyond owl's own dependencies (pyproject's extra).
_TRANSFORMERS_EXTRA = "owl[convert]"
_TRANSFORMERS_NEEDS = frozenset({"torch", "transformers", "safetensors", "tokenizers"})


def _transformers(path: Path, *, n_ctx: int, threads: int | None) -> Backend:
    try:
        from owl.engine.transformers import TransformersBackend
    except ImportError as err:
        missing = (err.name or "").split(".")[0]
        if missing not in _TRANSFORMERS_NEEDS:
            raise
        raise EngineError(
            f"running a safetensors model needs {missing}, which is not installed: "
            f"`pip install '{_TRANSFORMERS_EXTRA}'`, or `owl convert MODEL` to run it as a GGUF "
            "with llama.cpp"
        ) from err
    return TransformersBackend(path, n_ctx=n_ctx, threads=threads)


# format → backend factory(path, *, n_ctx, threads); folder formats get Store.model_dir.
BACKENDS: dict[str, Callable[..., Backend]] = {"gguf": _llamacpp, "safetensors": _transformers}


def context_size(manifest: Manifest, settings: Settings) -> int:
    """settings.ctx, capped by what the model was trained for (0: the model's own)."""
    trained = manifest.info.get("context_length") or 0
    if settings.ctx == 0:
        return trained
    return min(settings.ctx, trained) if trained else settings.ctx


def load(
    manifest: Manifest,
    *,
    store: Store,
    settings: Settings,
    allow_unsafe: bool = False,
    by: str = "owl",
    slots: int = 1,
) -> Model:
    """Load a stored model with the backend for its format, if its scan verdict is clean.

    UnsafeModel/UnverifiedModel otherwise; `allow_unsafe` loads it anyway and records
    that in the manifest, naming `by` (the command that asked). `slots`: how many
    generations a backend that batches runs at once (the server's --parallel).
    """
    from owl.scan.policy import require_loadable

    manifest = require_loadable(manifest, store=store, allow_unsafe=allow_unsafe, by=by)
    factory = BACKENDS.get(manifest.format)
    if factory is None:
        raise EngineError(
            f"model '{manifest.display_name}' is {manifest.format}; owl runs "
            f"{', '.join(BACKENDS)} models. Convert it to GGUF first (`owl convert`)"
        )
    path = store.model_dir(manifest) if manifest.is_folder else store.weights_path(manifest)
    size = context_size(manifest, settings)
    if factory is _llamacpp:
        backend = factory(path, n_ctx=size, threads=settings.threads, slots=slots)
    else:
        backend = factory(path, n_ctx=size, threads=settings.threads)
    return Model(backend, name=manifest.display_name, defaults=manifest.parameters)


__all__ = ["BACKENDS", "Backend", "Delta", "Model", "SamplingParams", "Usage", "load"]
