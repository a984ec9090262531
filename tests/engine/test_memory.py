"""owl/engine/memory.py: the memory a model takes, estimated before it is loaded."""

from __future__ import annotations

from pathlib import Path

from owl import engine
from owl.config import Settings
from owl.engine import OVERHEAD, kv_cache_bytes
from owl.formats import inspect
from owl.pull import pull
from owl.store import Store
from tests.support.tiny_gguf import write_tiny_gguf


def test_the_kv_cache_is_f16_keys_and_values_per_layer_and_position() -> None:
    metadata = {
        "general.architecture": "llama",
        "llama.block_count": 30,
        "llama.embedding_length": 576,
        "llama.attention.head_count": 9,
        "llama.attention.head_count_kv": 3,
    }
    assert kv_cache_bytes(metadata, ctx=2048) == 2 * 30 * 2048 * 192 * 2
    assert kv_cache_bytes({}, ctx=2048) == 0


def test_the_estimate_is_weights_and_a_context_per_slot_with_the_margin(
    tmp_path: Path, store: Store, settings: Settings
) -> None:
    model = pull(str(write_tiny_gguf(tmp_path / "tiny.gguf")), store=store, settings=settings)
    metadata = inspect(store.weights_path(model)).metadata
    # The tiny GGUF was trained on 64 positions: settings.ctx is capped there.
    ctx = engine.context_size(model, settings)
    assert ctx == 64
    for slots in (1, 4):
        expected = int((model.size + kv_cache_bytes(metadata, ctx=ctx * slots)) * OVERHEAD)
        assert engine.estimate_memory(model, store=store, settings=settings, slots=slots) == (
            expected
        )
    one = engine.estimate_memory(model, store=store, settings=settings, slots=1)
    four = engine.estimate_memory(model, store=store, settings=settings, slots=4)
    assert four > one


def test_a_folder_model_is_its_files_with_the_margin(
    tmp_path: Path, store: Store, settings: Settings
) -> None:
    model = pull(str(write_tiny_gguf(tmp_path / "tiny.gguf")), store=store, settings=settings)
    # A folder has no GGUF metadata to size a cache from (model_dir, not weights_path).
    folder = model.model_copy(update={"format": "safetensors"})
    assert folder.is_folder
    assert engine.estimate_memory(folder, store=store, settings=settings, slots=2) == int(
        folder.size * OVERHEAD
    )
