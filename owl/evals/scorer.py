"""A stored model opened to score text: resolved, past its scan gate, a GGUF in llama.cpp.

The scoring itself (chunks in, logits out) is owl/engine/llama/scorer.py.
"""

from __future__ import annotations

import logging

from owl.config import Settings
from owl.engine.llama.scorer import Scorer
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
) -> Scorer:
    """A stored model (a name, file or reference, pulled if absent) ready to score text.

    It must pass the scan gate like any model owl loads (UnsafeModel otherwise, unless
    `allow_unsafe`), and be a GGUF.
    """
    from owl.scan.policy import require_loadable

    manifest = (
        model
        if isinstance(model, Manifest)
        else resolve(model, store=store, settings=settings, pull_missing=True)
    )
    manifest = require_loadable(manifest, store=store, allow_unsafe=allow_unsafe, by=by)
    if manifest.format != "gguf":
        raise EvalError(
            f"model '{manifest.display_name}' is {manifest.format}; owl evaluates GGUF models: "
            f"convert it first (`owl convert {manifest.display_name}`)"
        )
    path = store.weights_path(manifest)
    scorer = Scorer(path, n_ctx=n_ctx, threads=settings.threads, name=manifest.display_name)
    if n_ctx > scorer.n_ctx_train > 0:
        log.warning(
            "%s was trained on a context of %d tokens; --ctx %d goes beyond it",
            scorer.name,
            scorer.n_ctx_train,
            n_ctx,
        )
    return scorer
