"""Ollama's /api/show of a vision model (a GGUF stored with its projector), through the real
ollama client against a real `owl serve`; OpenAI's /v1/models lists it as any other model."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import ollama
import openai
import pytest

from owl.config import Settings
from owl.pull import open_store, pull, pull_vision
from tests.support.owl_server import Server, running_server
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_mmproj import IMAGE_SIZE, PATCH_SIZE, PROJECTOR_TYPE, write_tiny_mmproj


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve-vision")
    files = root / "files"
    config = Settings(home=root / "owl-home")
    store = open_store(config)
    pull_vision(
        str(write_tiny_gguf(files / "seeing.gguf")),
        projector=str(write_tiny_mmproj(files / "mmproj-seeing-f16.gguf")),
        store=store,
        settings=config,
    )
    pull(str(write_tiny_gguf(files / "blind.gguf", rows=48)), store=store, settings=config)
    with running_server(root) as running:
        yield running


def test_show_says_a_model_with_a_projector_has_vision(server: Server) -> None:
    with ollama.Client(host=server.base, timeout=60) as client:
        seeing = client.show("seeing")
        blind = client.show("blind")
    assert seeing.capabilities == ["completion", "tools", "vision"]
    assert blind.capabilities == ["completion", "tools"]
    assert seeing.modelinfo["general.architecture"] == "llama"  # the language model's


def test_show_gives_the_projectors_metadata_as_projector_info(server: Server) -> None:
    # The ollama client's ShowResponse has no field for it: the raw answer has.
    seeing = httpx.post(f"{server.base}/api/show", json={"model": "seeing"}, timeout=60).json()
    blind = httpx.post(f"{server.base}/api/show", json={"model": "blind"}, timeout=60).json()
    info = seeing["projector_info"]
    assert info["general.architecture"] == "clip"
    assert info["clip.vision.image_size"] == IMAGE_SIZE
    assert info["clip.vision.patch_size"] == PATCH_SIZE
    assert info["clip.projector_type"] == PROJECTOR_TYPE
    assert info["clip.vision.projection_dim"] == 8
    assert "projector_info" not in blind


def test_openai_models_lists_a_vision_model_as_any_other(server: Server) -> None:
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", timeout=60)
    models = {model.id: model for model in client.models.list()}
    assert {"seeing", "blind"} <= set(models)
    assert set(models["seeing"].model_dump()) == set(models["blind"].model_dump())


def test_the_projector_file_is_where_the_store_says(server: Server) -> None:
    store = open_store(Settings(home=server.home))
    manifest = next(m for m in store.list() if m.name == "seeing")
    assert store.projector_path(manifest).is_file()
