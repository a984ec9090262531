"""The engine: load a stored model into a backend and generate from it.

Backends register by model format: llama.cpp for GGUF (the default), transformers for
Hugging Face safetensors folders (families llama.cpp cannot run), imported only when used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from owl.config import Settings
from owl.engine.backend import Backend
from owl.engine.model import Delta, Model, Usage
from owl.engine.sampling import SamplingParams
from owl.errors import AdapterMismatch, EngineError
from owl.store import Manifest, Store


def _llamacpp(
    path: Path,
    *,
    n_ctx: int,
    threads: int,
    slots: int = 1,
    adapters: Sequence[tuple[Path, float]] = (),
) -> Backend:
    from owl.engine.llamacpp import LlamaCppBackend

    return LlamaCppBackend(path, n_ctx=n_ctx, threads=threads, slots=slots, adapters=adapters)


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
    adapters: Sequence[Manifest] = (),
    scales: Sequence[float] | None = None,
) -> Model:
    """Load a stored model with the backend for its format, if its scan verdict is clean.

    UnsafeModel/UnverifiedModel otherwise; `allow_unsafe` loads it anyway and records
    that in the manifest, naming `by` (the command that asked). `slots`: how many
    generations a backend that batches runs at once (the server's --parallel).

    `adapters`: stored LoRA adapters to apply (llama.cpp, GGUF bases only), each with its
    scale in `scales` (default 1.0 each); each must pass its own scan and fit the base
    (owl/engine/adapters.py), else AdapterMismatch. `manifest` may itself be an adapter:
    its recorded base is loaded with it, the adapter first (scale 1.0 unless `scales` has
    one more entry than `adapters`).
    """
    from owl.engine.adapters import base_of, check_fits, combination_name, is_adapter
    from owl.scan.policy import require_loadable

    adapters = list(adapters)
    if is_adapter(manifest, store=store):
        adapters.insert(0, manifest)
        if scales is not None and len(scales) == len(adapters) - 1:
            scales = [1.0, *scales]  # the scales were given for the other adapters
        manifest = base_of(manifest, store=store)
    if scales is None:
        scales = [1.0] * len(adapters)
    if len(scales) != len(adapters):
        raise AdapterMismatch(
            f"{len(scales)} adapter scale(s) for {len(adapters)} adapter(s): give one scale "
            "per adapter"
        )
    manifest = require_loadable(manifest, store=store, allow_unsafe=allow_unsafe, by=by)
    for adapter in adapters:
        check_fits(adapter, manifest, store=store)
    adapters = [
        require_loadable(adapter, store=store, allow_unsafe=allow_unsafe, by=by)
        for adapter in adapters
    ]
    factory = BACKENDS.get(manifest.format)
    if factory is None:
        raise EngineError(
            f"model '{manifest.display_name}' is {manifest.format}; owl runs "
            f"{', '.join(BACKENDS)} models. Convert it to GGUF first (`owl convert`)"
        )
    path = store.model_dir(manifest) if manifest.is_folder else store.weights_path(manifest)
    size = context_size(manifest, settings)
    if factory is _llamacpp:
        applied = [
            (store.weights_path(adapter), scale)
            for adapter, scale in zip(adapters, scales, strict=True)
        ]
        backend = factory(path, n_ctx=size, threads=settings.threads, slots=slots, adapters=applied)
    else:
        backend = factory(path, n_ctx=size, threads=settings.threads)
    name = combination_name(manifest, adapters) if adapters else manifest.display_name
    return Model(backend, name=name, defaults=manifest.parameters)


__all__ = ["BACKENDS", "Backend", "Delta", "Model", "SamplingParams", "Usage", "load"]
