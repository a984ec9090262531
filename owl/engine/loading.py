"""engine.load: a stored model, past its scan gate, into the backend the registry picks."""

from __future__ import annotations

from collections.abc import Sequence

from owl.config import Settings
from owl.engine.backend import Capability, Loaded
from owl.engine.context_window import context_size
from owl.engine.memory import cache_types_of
from owl.engine.registry import DRAWING, RERANKING, SPEECH, LoadRequest, select
from owl.errors import AdapterMismatch
from owl.store import Manifest, Store


def load(
    manifest: Manifest,
    *,
    store: Store,
    settings: Settings,
    capability: Capability = Capability.CHAT,
    allow_unsafe: bool = False,
    by: str = "owl",
    slots: int = 1,
    adapters: Sequence[Manifest] = (),
    scales: Sequence[float] | None = None,
) -> Loaded:
    """Load a stored model for `capability`, if its scan verdict is clean.

    A Model for chat, complete and score; an Embedder for embed; a Transcriber, Voice,
    Drawer or Reranker (owl/engine/backend.py) for transcribe, speak, draw and rerank. The
    backend is the registry's for the model's format and the capability
    (owl/engine/registry.py); a model no backend can run that way raises an OwlError saying
    what to do (NotEmbeddable, …).

    UnsafeModel/UnverifiedModel otherwise; `allow_unsafe` loads it anyway and records
    that in the manifest, naming `by` (the command that asked). `slots`: how many
    generations a backend that batches runs at once (the server's --parallel).

    `adapters`: stored LoRA adapters to apply (llama.cpp, GGUF bases only), each with its
    scale in `scales` (default 1.0 each); each must pass its own scan and fit the base
    (owl/engine/adapters.py), else AdapterMismatch. `manifest` may itself be an adapter:
    its recorded base is loaded with it, the adapter first (scale 1.0 unless `scales` has
    one more entry than `adapters`).
    """
    from owl.scan.advisories import advisories_for
    from owl.scan.policy import require_loadable

    if capability is Capability.EMBED:
        if adapters:
            raise AdapterMismatch("LoRA adapters apply to generation, not to embeddings")
        manifest = require_loadable(
            manifest,
            store=store,
            allow_unsafe=allow_unsafe,
            by=by,
            advisories=advisories_for(settings),  # the settings handed in, not the environment
        )
        request = LoadRequest(
            store.model_dir(manifest) if manifest.is_folder else store.weights_path(manifest),
            name=manifest.display_name,
            n_ctx=context_size(manifest, settings),
            threads=settings.threads,
        )
        return select(manifest, capability).load(request)
    if capability in SPEECH | DRAWING | RERANKING:  # models that know their own window
        manifest = require_loadable(
            manifest,
            store=store,
            allow_unsafe=allow_unsafe,
            by=by,
            advisories=advisories_for(settings),
        )
        entry = select(manifest, capability)
        request = LoadRequest(
            store.model_dir(manifest),
            name=manifest.display_name,
            n_ctx=0,
            threads=settings.threads,
            defaults=dict(manifest.parameters or {}),
        )
        return entry.load(request)
    return _load_generating(
        manifest,
        store=store,
        settings=settings,
        capability=capability,
        allow_unsafe=allow_unsafe,
        by=by,
        slots=slots,
        adapters=adapters,
        scales=scales,
    )


def _load_generating(
    manifest: Manifest,
    *,
    store: Store,
    settings: Settings,
    capability: Capability,
    allow_unsafe: bool,
    by: str,
    slots: int,
    adapters: Sequence[Manifest],
    scales: Sequence[float] | None,
) -> Loaded:
    from owl.engine.adapters import base_of, check_fits, combination_name, is_adapter
    from owl.scan.advisories import advisories_for
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
    # The advisories of the settings handed in (a server's), not of the environment.
    advised = advisories_for(settings)
    gate = {"store": store, "allow_unsafe": allow_unsafe, "by": by, "advisories": advised}
    manifest = require_loadable(manifest, **gate)
    for adapter in adapters:
        check_fits(adapter, manifest, store=store)
    adapters = [require_loadable(adapter, **gate) for adapter in adapters]
    entry = select(manifest, capability)
    path = store.model_dir(manifest) if manifest.is_folder else store.weights_path(manifest)
    request = LoadRequest(
        path,
        name=combination_name(manifest, adapters) if adapters else manifest.display_name,
        n_ctx=context_size(manifest, settings),
        threads=settings.threads,
        slots=slots,
        adapters=tuple(
            (store.weights_path(adapter), scale)
            for adapter, scale in zip(adapters, scales, strict=True)
        ),
        defaults=dict(manifest.parameters or {}),
        projector=store.projector_path(manifest) if manifest.format == "gguf" else None,
        cache_types=cache_types_of(settings),
    )
    return entry.load(request)


def load_embedder(
    manifest: Manifest,
    *,
    store: Store,
    settings: Settings,
    allow_unsafe: bool = False,
    by: str = "owl",
) -> Loaded:
    """`load(..., capability=Capability.EMBED)`: an Embedder for a stored GGUF.

    NotEmbeddable for a model that is not a GGUF (`owl convert` it first).
    """
    return load(
        manifest,
        store=store,
        settings=settings,
        capability=Capability.EMBED,
        allow_unsafe=allow_unsafe,
        by=by,
    )
