"""Ollama's /api/pull of a vision model brings its projector, as `owl pull` does: pulled
through the official `ollama` client from a loopback server that answers like the Hub."""

from __future__ import annotations

from pathlib import Path

import httpx
import ollama
import pytest

from tests.support.fileserver import FileServer
from tests.support.hub import Hub
from tests.support.owl_server import running_server
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_mmproj import write_tiny_mmproj

pytestmark = pytest.mark.slow


def test_a_hub_vision_model_pulled_through_api_pull_comes_with_its_projector(
    tmp_path: Path,
) -> None:
    with FileServer() as files:
        hub = Hub(files, tmp_path / "hub-files")
        hub.add_repo(
            "Org/Tiny-GGUF",
            {
                "Tiny-Q8_0.gguf": write_tiny_gguf(tmp_path / "m.gguf").read_bytes(),
                "mmproj-Tiny-f16.gguf": write_tiny_mmproj(tmp_path / "p.gguf").read_bytes(),
            },
        )
        env = {"HF_ENDPOINT": files.base, "OWL_ALLOWED_SOURCES": "private"}
        (tmp_path / "serve").mkdir()
        with running_server(tmp_path / "serve", env=env) as server:
            client = ollama.Client(host=server.base, timeout=120)
            statuses = [status.status for status in client.pull("hf:Org/Tiny-GGUF", stream=True)]
            assert statuses[-1] == "success", statuses
            name = next(m.model for m in client.list().models if "tiny" in m.model.lower())
            shown = client.show(name)
            assert "vision" in (shown.capabilities or []), shown.capabilities
            raw = httpx.post(f"{server.base}/api/show", json={"model": name}, timeout=60).json()
            assert raw["projector_info"]  # Ollama's facts of the projector: owl's mmproj
            downloads = [get for get in hub.paths("GET") if "/resolve/" in get]
    assert any(get.endswith("/mmproj-Tiny-f16.gguf") for get in downloads), downloads
