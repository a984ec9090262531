"""What a GGUF's metadata says about embeddings: its pooling, and whether it is made for them.

Facts read from metadata only (no model is loaded), so `capabilities_of` can use them.
"""

from __future__ import annotations

from typing import Any

POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
# Architectures that are encoders (bidirectional attention): embedding models even when a
# converter wrote no pooling type.
ENCODER_ARCHITECTURES = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2", "modern-bert", "eurobert"}
)


def pooling_type(metadata: dict[str, Any]) -> str | None:
    """The pooling a GGUF's metadata names ("mean", "cls", "last", …), or None if none."""
    arch = metadata.get("general.architecture", "")
    value = metadata.get(f"{arch}.pooling_type")
    names = {number: name for name, number in POOLING.items()}
    return names.get(value) if isinstance(value, int) else None


def is_embedding_model(metadata: dict[str, Any]) -> bool:
    """Whether a GGUF is made for embeddings (an encoder, or one with a pooling type).

    Any causal GGUF can embed too (mean pooling), but is not an embedding model.
    """
    pooling = pooling_type(metadata)
    arch = metadata.get("general.architecture", "")
    return (pooling is not None and pooling not in ("none", "rank")) or (
        arch in ENCODER_ARCHITECTURES
    )
