"""owl/engine/llama/pooling.py: what a GGUF's metadata says about embeddings."""

from __future__ import annotations

from owl.engine.llama.pooling import is_embedding_model, pooling_type


def test_the_pooling_type_is_read_by_architecture() -> None:
    assert pooling_type({"general.architecture": "bert", "bert.pooling_type": 2}) == "cls"
    assert pooling_type({"general.architecture": "llama"}) is None
    assert pooling_type({"general.architecture": "bert", "bert.pooling_type": "mean"}) is None


def test_encoders_and_pooled_models_are_embedding_models_causal_ones_are_not() -> None:
    assert is_embedding_model({"general.architecture": "nomic-bert"})
    assert is_embedding_model({"general.architecture": "qwen3", "qwen3.pooling_type": 3})
    assert not is_embedding_model({"general.architecture": "qwen3", "qwen3.pooling_type": 4})
    assert not is_embedding_model({"general.architecture": "llama", "llama.pooling_type": 0})
    assert not is_embedding_model({"general.architecture": "llama"})
