"""owl fit: the best quantization of a model that fits a memory budget, and what it costs.

Memory is the engine's estimate (owl/engine/memory.py): the weights + the KV cache for the
context + a working margin. A type's
weights are measured where the store already holds that quantization of the model, else
estimated from the type's nominal bits per weight. Its quality cost is the one measured by
`owl quantize --report` where there is one, else llama.cpp's published figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from owl.engine.memory import OVERHEAD, kv_cache_bytes
from owl.quantize.quant_types import QuantType, quant_types
from owl.store import Manifest, Store


@dataclass(frozen=True)
class FitOption:
    type: str
    weights_bytes: int
    measured: bool  # the size of a quantization in the store, not an estimate
    memory_bytes: int
    fits: bool
    cost: str  # the measured quality cost, or llama.cpp's published one
    stored_as: str | None


def _derived(model: Manifest, store: Store) -> dict[str, Manifest]:
    found = {}
    for other in store.list():
        quantized = other.info.get("quantize") or {}
        if any(p.digest == model.weights.digest for p in other.parents) and quantized:
            found[str(quantized.get("type"))] = other
    return found


def _cost(kind: QuantType, stored: Manifest | None) -> str:
    quality = (stored.info.get("quality") if stored is not None else None) or {}
    if quality:
        return (
            f"measured: perplexity {quality['perplexity']:.3f} "
            f"(reference {quality['reference_perplexity']:.3f}), "
            f"KLD {quality['kld_mean']:.4f}, top-1 {quality['top1_agreement']:.1%} "
            f"({quality['text']}, ctx {quality['ctx']})"
        )
    return f"published (Llama-3-8B): {kind.description}"


def fit(
    model: Manifest, *, store: Store, ram: int, ctx: int, metadata: dict[str, Any]
) -> list[FitOption]:
    """Every quantization type that needs no importance matrix, best quality first."""
    parameters = model.info.get("parameters") or 0
    cache = kv_cache_bytes(metadata, ctx=ctx)
    derived = _derived(model, store)
    options = []
    for kind in sorted(quant_types().values(), key=lambda kind: -kind.bits):
        if kind.imatrix == "required":
            continue
        stored = derived.get(kind.name)
        weights = stored.size if stored is not None else int(parameters * kind.bits / 8)
        memory = int((weights + cache) * OVERHEAD)
        options.append(
            FitOption(
                type=kind.name,
                weights_bytes=weights,
                measured=stored is not None,
                memory_bytes=memory,
                fits=memory <= ram,
                cost=_cost(kind, stored),
                stored_as=stored.display_name if stored is not None else None,
            )
        )
    return options


def best(options: list[FitOption]) -> FitOption | None:
    """The highest-quality option that fits, or None."""
    return next((option for option in options if option.fits), None)
