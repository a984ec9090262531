"""--cache-type-k/-v reach llama.cpp: the bundled model's cache holds each token in the types
asked for — exactly the bytes owl's memory estimate counts — and still answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl import engine
from owl.config import Settings
from owl.engine.memory import cache_types_of, kv_cache_bytes
from owl.formats import inspect
from owl.pull import open_store, pull

PROMPT = "The quick brown fox jumps over the lazy dog. " * 8
TYPES = [("f16", "f16"), ("q8_0", "q8_0"), ("q4_0", "q4_0"), ("q8_0", "f16")]


def _cached(home: Path, k: str, v: str) -> tuple[int, int, str, Settings, dict]:
    settings = Settings(home=home, ctx=512, cache_type_k=k, cache_type_v=v)
    store = open_store(settings)
    manifest = pull("smollm2", store=store, settings=settings)
    model = engine.load(manifest, store=store, settings=settings)
    try:
        tokens = model.text_tokens(PROMPT)
        # One token sampled: the cache then holds the prompt's cells only, whatever it says.
        list(model.generate(tokens, model.sampling(temperature=0.0, max_tokens=1)))
        size = model.backend.cached_bytes(0)
        metadata = inspect(store.weights_path(manifest)).metadata
        asked = [{"role": "user", "content": "Name three colours."}]
        text = "".join(d.text for d in model.chat(asked, model.sampling(max_tokens=12)))
        return size, len(tokens), text, settings, metadata
    finally:
        model.close()


@pytest.fixture(scope="module")
def measured(tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("cache-types")
    return {types: _cached(home, *types) for types in TYPES}


def test_each_token_is_cached_in_the_types_asked_for(measured: dict) -> None:
    base, cells, _, settings, metadata = measured[("f16", "f16")]
    f16 = kv_cache_bytes(metadata, ctx=cells, cache_types=cache_types_of(settings))
    for types in TYPES[1:]:
        size, same_cells, _, settings, _ = measured[types]
        assert same_cells == cells
        quantized = kv_cache_bytes(metadata, ctx=cells, cache_types=cache_types_of(settings))
        # llama.cpp's saved state of the sequence = its cells in those types + one header:
        # the difference from f16 is exactly what owl's estimate says it saves.
        assert base - size == f16 - quantized, types


def test_a_quantized_cache_still_answers(measured: dict) -> None:
    for types in TYPES:
        assert measured[types][2].strip(), types
