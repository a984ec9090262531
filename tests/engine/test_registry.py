"""owl/engine/registry.py: picking a backend by format and capability, without loading one."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl import engine
from owl.config import Settings
from owl.engine import Capability
from owl.engine.registry import ENTRIES, select
from owl.errors import EngineError, NotEmbeddable, WrongModelKind
from owl.pull import pull
from owl.store import Manifest, Store
from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture
def tiny(tmp_path: Path, store: Store, settings: Settings) -> Manifest:
    return pull(str(write_tiny_gguf(tmp_path / "tiny.gguf")), store=store, settings=settings)


def test_every_format_and_capability_has_one_entry_at_most() -> None:
    pairs = [(entry.format, c) for entry in ENTRIES for c in entry.capabilities]
    assert len(pairs) == len(set(pairs))
    assert select_format("gguf", Capability.EMBED) != select_format("gguf", Capability.CHAT)


def select_format(format: str, capability: Capability) -> object:
    return next(e for e in ENTRIES if e.format == format and capability in e.capabilities)


def test_a_format_no_backend_runs_is_refused_with_what_owl_runs(tiny: Manifest) -> None:
    tflite = tiny.model_copy(update={"format": "tflite"})
    with pytest.raises(
        EngineError, match=r"is tflite; owl runs gguf, safetensors, ctranslate2, onnx"
    ):
        select(tflite, Capability.CHAT)
    with pytest.raises(NotEmbeddable, match="owl makes embeddings with llama.cpp from GGUF"):
        select(tflite, Capability.EMBED)


def test_embeddings_of_a_safetensors_model_say_to_convert_it(
    tiny: Manifest, store: Store, settings: Settings
) -> None:
    folder = tiny.model_copy(update={"format": "safetensors"})
    with pytest.raises(NotEmbeddable, match=r"convert it first \(`owl convert tiny"):
        engine.load(folder, store=store, settings=settings, capability=Capability.EMBED)


def test_a_capability_the_formats_backend_lacks_is_refused(tiny: Manifest) -> None:
    folder = tiny.model_copy(update={"format": "safetensors"})
    with pytest.raises(EngineError, match="cannot score with"):
        select(folder, Capability.SCORE)
    with pytest.raises(WrongModelKind, match="not a speech-to-text one"):
        select(tiny, Capability.TRANSCRIBE)
    with pytest.raises(WrongModelKind, match="not a voice"):
        select(tiny, Capability.SPEAK)


def test_capabilities_of_a_causal_gguf_a_folder_and_an_embedding_gguf(
    tiny: Manifest, tmp_path: Path, store: Store, settings: Settings
) -> None:
    generating = {Capability.CHAT, Capability.COMPLETE, Capability.SCORE}
    assert engine.capabilities_of(tiny, store=store) == generating
    folder = tiny.model_copy(update={"format": "safetensors"})
    assert engine.capabilities_of(folder, store=store) == {Capability.CHAT, Capability.COMPLETE}

    import gguf
    import numpy as np

    path = tmp_path / "encoder.gguf"
    writer = gguf.GGUFWriter(str(path), "bert")
    writer.add_name("encoder")
    writer.add_pooling_type(gguf.PoolingType.MEAN)
    writer.add_tensor("token_embd.weight", np.ones((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    encoder = pull(str(path), store=store, settings=settings)
    assert engine.capabilities_of(encoder, store=store) == {Capability.EMBED}
