"""The KV cache's element types (llama-server's --cache-type-k/-v): f16 by default; q8_0
and q4_0 halve or quarter what each cached token costs, at a measured cost in quality
(bench/kv_cache.py). A quantized V cache needs flash attention, which owl's generation and
scoring contexts ask for where the model allows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

CacheType = Literal["f16", "q8_0", "q4_0"]
# Bytes per cached element: ggml's block sizes (q8_0: 32 values in 34 bytes; q4_0: in 18).
BYTES_PER_ELEMENT: dict[str, float] = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}


@dataclass(frozen=True)
class CacheTypes:
    """The element types of the K and the V cache."""

    k: CacheType = "f16"
    v: CacheType = "f16"

    def bytes_per_pair(self) -> float:
        """Bytes of one K element plus one V element."""
        return BYTES_PER_ELEMENT[self.k] + BYTES_PER_ELEMENT[self.v]


DEFAULT = CacheTypes()
