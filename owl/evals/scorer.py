"""A stored model opened to score text: resolved, past its scan gate, a GGUF in llama.cpp.

The scoring itself (chunks in, logits out) is owl/engine/llama/scorer.py.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from owl.config import Settings
from owl.engine.llama.scorer import Scorer
from owl.engine.memory import cache_types_of
from owl.errors import EvalError
from owl.pull import resolve
from owl.store import Manifest, Store

log = logging.getLogger(__name__)


def open_scorer(
    model: str | Manifest,
    *,
    n_ctx: int,
    store: Store,
    settings: Settings,
    allow_unsafe: bool = False,
    by: str = "owl eval",
    adapters: Sequence[Manifest] = (),
) -> Scorer:
    """A stored model (a name, file or reference, pulled if absent) ready to score text.

    It must pass the scan gate like any model owl loads (UnsafeModel otherwise, unless
    `allow_unsafe`), and be a GGUF. `adapters`: stored LoRA adapters applied at scale 1.0,
    each past its own scan gate and fitting the base (AdapterMismatch otherwise); `model`
    may itself be an adapter, scored on its recorded base, as engine.load does.
    """
    from owl.engine.adapters import base_of, check_fits, is_adapter
    from owl.scan.policy import require_loadable

    manifest = (
        model
        if isinstance(model, Manifest)
        else resolve(model, store=store, settings=settings, pull_missing=True)
    )
    adapters = list(adapters)
    if is_adapter(manifest, store=store):
        adapters.insert(0, manifest)
        manifest = base_of(manifest, store=store)
    manifest = require_loadable(manifest, store=store, allow_unsafe=allow_unsafe, by=by)
    for adapter in adapters:
        check_fits(adapter, manifest, store=store)
    adapters = [
        require_loadable(adapter, store=store, allow_unsafe=allow_unsafe, by=by)
        for adapter in adapters
    ]
    if manifest.format != "gguf":
        raise EvalError(
            f"model '{manifest.display_name}' is {manifest.format}; owl evaluates GGUF models: "
            f"convert it first (`owl convert {manifest.display_name}`)"
        )
    path = store.weights_path(manifest)
    scorer = Scorer(
        path,
        n_ctx=n_ctx,
        threads=settings.threads,
        name=manifest.display_name,
        adapters=[(store.weights_path(adapter), 1.0) for adapter in adapters],
        cache_types=cache_types_of(settings),  # OWL_CACHE_TYPE_K/V, as a server would run it
    )
    if n_ctx > scorer.n_ctx_train > 0:
        log.warning(
            "%s was trained on a context of %d tokens; --ctx %d goes beyond it",
            scorer.name,
            scorer.n_ctx_train,
            n_ctx,
        )
    return scorer
