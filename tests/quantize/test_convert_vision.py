"""owl convert of a vision-language folder (a tiny SmolVLM): one stored model of two files,
the language model's GGUF and its projector, byte for byte what llama.cpp's converter
writes when run by hand on the folder, that sees images; its lineage names the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.config import Settings
from owl.engine import Capability
from owl.engine.registry import capabilities_of
from owl.quantize.convert import convert
from owl.quantize.vision_convert import is_vision_folder
from owl.store import Store
from owl.store.blobs import sha256_file
from tests.quantize.test_convert import shared_tools
from tests.support.tiny_vlm import shared_tiny_vlm

pytestmark = pytest.mark.slow  # two converter runs, each a Python process importing torch


@pytest.fixture(scope="module")
def vlm_folder(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    return shared_tiny_vlm(tmp_path_factory.getbasetemp(), bundled_gguf).folder


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tools(tmp_path_factory.getbasetemp())


def test_a_vision_folder_converts_to_a_model_and_its_projector(
    vlm_folder: Path,
    tools: Path,
    store: Store,
    settings: Settings,
    tmp_path_factory: pytest.TempPathFactory,
    bundled_gguf: Path,
) -> None:
    assert is_vision_folder(vlm_folder)
    manifest = convert(vlm_folder, store=store, settings=settings, outtype="f32", tools=tools)

    assert manifest.projector is not None
    assert {Capability.SEE, Capability.CHAT} <= capabilities_of(manifest, store=store)
    by_hand = shared_tiny_vlm(tmp_path_factory.getbasetemp(), bundled_gguf)  # by hand
    assert manifest.weights.digest == sha256_file(by_hand.model)
    assert manifest.projector.digest == sha256_file(by_hand.projector)
    assert manifest.parents[0].name == str(vlm_folder)
    assert manifest.parents[0].relation == "converted"
    assert manifest.license == "apache-2.0"
    # Converting the same folder again is the stored model.
    again = convert(vlm_folder, store=store, settings=settings, outtype="f32", tools=tools)
    assert again == manifest


def test_a_text_folder_is_not_a_vision_one(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    assert not is_vision_folder(tmp_path)
