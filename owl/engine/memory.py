"""How much memory a model takes once loaded, estimated before loading it.

Memory = the weights (the file, mapped whole) + the KV cache for the context (keys and values
for every layer, f16 unless OWL_CACHE_TYPE_K/V say otherwise) + a working margin for
llama.cpp's compute buffers. The pool checks a model against OWL_MAX_MEMORY with this before
it loads it; `owl fit` sizes quantizations with it.
"""

from __future__ import annotations

from typing import Any

from owl.config import Settings
from owl.engine.context_window import context_size
from owl.engine.kv_cache import DEFAULT, CacheTypes
from owl.store import Manifest, Store

OVERHEAD = 1.10  # compute buffers, the tokenizer, the runtime: llama.cpp's own guidance


def kv_cache_bytes(metadata: dict[str, Any], *, ctx: int, cache_types: CacheTypes = DEFAULT) -> int:
    """K and V (of `cache_types`: f16 by default) for every layer and position of the context."""
    arch = metadata.get("general.architecture", "")
    layers = int(metadata.get(f"{arch}.block_count") or 0)
    embedding = int(metadata.get(f"{arch}.embedding_length") or 0)
    heads = int(metadata.get(f"{arch}.attention.head_count") or 1)
    kv_heads = int(metadata.get(f"{arch}.attention.head_count_kv") or heads)
    width = embedding * kv_heads // max(heads, 1)
    return int(layers * ctx * width * cache_types.bytes_per_pair())


def with_overhead(
    weights: int, metadata: dict[str, Any], *, ctx: int, cache_types: CacheTypes = DEFAULT
) -> int:
    """Weights plus the KV cache of `ctx` positions, with the working margin."""
    return int((weights + kv_cache_bytes(metadata, ctx=ctx, cache_types=cache_types)) * OVERHEAD)


def estimate_memory(manifest: Manifest, *, store: Store, settings: Settings, slots: int) -> int:
    """The bytes a stored model takes loaded with `slots` generations at once.

    The llama.cpp backend gives every slot a whole context window (settings.ctx, capped by
    the model's own). A folder model has no GGUF metadata to size its cache from: its files
    and the margin.
    """
    if manifest.is_folder:
        return int(manifest.size * OVERHEAD)
    from owl.formats import inspect

    metadata = inspect(store.weights_path(manifest)).metadata
    ctx = context_size(manifest, settings)
    if not ctx:
        arch = metadata.get("general.architecture", "")
        ctx = int(metadata.get(f"{arch}.context_length") or 0)
    return with_overhead(
        manifest.size, metadata, ctx=ctx * max(slots, 1), cache_types=cache_types_of(settings)
    )


def cache_types_of(settings: Settings) -> CacheTypes:
    """The KV cache types the settings ask for (OWL_CACHE_TYPE_K, OWL_CACHE_TYPE_V)."""
    return CacheTypes(settings.cache_type_k, settings.cache_type_v)
