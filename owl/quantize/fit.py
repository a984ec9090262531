"""owl fit: the best quantization of a model that fits a memory budget, and what it costs.

Memory = the weights (the file, mapped whole) + the KV cache for the context (f16 keys and
values for every layer) + a working margin for llama.cpp's compute buffers. A type's
weights are measured where the store already holds that quantization of the model, else
estimated from the type's nominal bits per weight. Its quality cost is the one measured by
`owl quantize --report` where there is one, else llama.cpp's published figure.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from owl.quantize.quantize import QuantType, quant_types
from owl.store import Manifest, Store

OVERHEAD = 1.10  # compute buffers, the tokenizer, the runtime: llama.cpp's own guidance
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'8GB', '8 GiB', '512M', '2.5g' → bytes (binary units, as RAM is sold)."""
    match = _SIZE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a memory size; write e.g. 8GB, 512MB or 16G")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


@dataclass(frozen=True)
class FitOption:
    type: str
    weights_bytes: int
    measured: bool  # the size of a quantization in the store, not an estimate
    memory_bytes: int
    fits: bool
    cost: str  # the measured quality cost, or llama.cpp's published one
    stored_as: str | None


def kv_cache_bytes(metadata: dict[str, Any], *, ctx: int) -> int:
    """f16 K and V for every layer and position of the context."""
    arch = metadata.get("general.architecture", "")
    layers = int(metadata.get(f"{arch}.block_count") or 0)
    embedding = int(metadata.get(f"{arch}.embedding_length") or 0)
    heads = int(metadata.get(f"{arch}.attention.head_count") or 1)
    kv_heads = int(metadata.get(f"{arch}.attention.head_count_kv") or heads)
    return 2 * layers * ctx * (embedding * kv_heads // max(heads, 1)) * 2


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
