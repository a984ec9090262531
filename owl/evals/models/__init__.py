"""The models `owl eval run` asks: a stored model through owl's engine, or any
OpenAI-compatible endpoint. Both answer the same Requests (owl/evals/tasks/request.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from owl.config import Settings
from owl.evals.models.endpoint import EndpointModel
from owl.evals.models.engine import EngineModel
from owl.evals.tasks.request import Answer, Request
from owl.store import Store


class EvalModel(Protocol):
    label: str  # what the table shows: "smollm2", "smollm2:q8_0", "smollm2+adapter", a URL
    digest: str | None  # the stored model's sha256 (with its adapters'); None for an endpoint
    price_per_1k_tokens: float | None  # an endpoint's, when given

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """An Answer per request, in order; loglikelihood requests that share a context
        are scored with the context once (the engine)."""
        ...

    def close(self) -> None: ...


def open_eval_model(
    ref: str,
    *,
    store: Store,
    settings: Settings,
    endpoint: str | None = None,
    api_key: str | None = None,
    allow_unsafe: bool = False,
    price_per_1k_tokens: float | None = None,
) -> EvalModel:
    """The model `ref` names, ready to answer.

    Without `endpoint`: a stored model, a NAME:quant, or NAME+ADAPTER[+…] as `owl run` takes
    them (pulled if absent), past the scan gate (UnsafeModel/UnverifiedModel unless
    `allow_unsafe`); it loads on first use. With `endpoint` (an OpenAI-compatible base URL,
    such as http://127.0.0.1:11435/v1): `ref` is the model id there, `api_key` its key.
    """
    if endpoint is not None:
        return EndpointModel(
            endpoint, ref, api_key=api_key, price_per_1k_tokens=price_per_1k_tokens
        )
    from owl.engine.adapters import base_of, check_fits, is_adapter, split_combination
    from owl.pull import resolve
    from owl.scan.advisories import advisories_for
    from owl.scan.policy import require_loadable

    label = ref.strip()
    # "BASE+ADAPTER[+…]", as owl run takes it (a file's path is never split).
    names = [label] if Path(label).expanduser().exists() else split_combination(label)
    manifest = resolve(names[0], store=store, settings=settings, pull_missing=True)
    adapters = [
        resolve(name, store=store, settings=settings, pull_missing=True) for name in names[1:]
    ]
    if is_adapter(manifest, store=store):
        adapters.insert(0, manifest)
        manifest = base_of(manifest, store=store)
    by = "owl eval --allow-unsafe"
    # The gate now, not at the first question: a refused model fails before the run starts.
    gate = {"store": store, "allow_unsafe": allow_unsafe, "by": by}
    manifest = require_loadable(manifest, advisories=advisories_for(settings), **gate)
    for adapter in adapters:
        check_fits(adapter, manifest, store=store)
    adapters = [
        require_loadable(adapter, advisories=advisories_for(settings), **gate)
        for adapter in adapters
    ]
    return EngineModel(
        manifest,
        label=label,
        adapters=adapters,
        store=store,
        settings=settings,
        allow_unsafe=allow_unsafe,
        by=by,
    )


__all__ = ["EndpointModel", "EngineModel", "EvalModel", "open_eval_model"]
