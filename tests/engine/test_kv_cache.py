"""The KV cache's element types as owl sizes them: what each cached token costs."""

from __future__ import annotations

import pytest

from owl.config import Settings
from owl.engine.kv_cache import BYTES_PER_ELEMENT, CacheTypes
from owl.engine.memory import cache_types_of, kv_cache_bytes

# SmolLM2-135M's shape: 30 layers, 576 wide, 9 heads of which 3 are KV heads.
METADATA = {
    "general.architecture": "llama",
    "llama.block_count": 30,
    "llama.embedding_length": 576,
    "llama.attention.head_count": 9,
    "llama.attention.head_count_kv": 3,
}


def test_f16_costs_two_bytes_for_each_k_and_v_element() -> None:
    assert kv_cache_bytes(METADATA, ctx=1) == 30 * 192 * 2 * 2


@pytest.mark.parametrize(("k", "v"), [("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "f16")])
def test_quantized_caches_cost_their_block_sizes(k: str, v: str) -> None:
    types = CacheTypes(k, v)  # type: ignore[arg-type]
    expected = 30 * 192 * 1024 * (BYTES_PER_ELEMENT[k] + BYTES_PER_ELEMENT[v])
    assert kv_cache_bytes(METADATA, ctx=1024, cache_types=types) == int(expected)
    assert kv_cache_bytes(METADATA, ctx=1024, cache_types=types) < kv_cache_bytes(
        METADATA, ctx=1024
    )


def test_the_settings_name_the_types_and_refuse_others(tmp_path) -> None:
    settings = Settings(home=tmp_path, cache_type_k="q8_0", cache_type_v="q4_0")
    assert cache_types_of(settings) == CacheTypes("q8_0", "q4_0")
    with pytest.raises(ValueError, match="q8_0"):
        Settings(home=tmp_path, cache_type_k="q9")
