"""Ollama's DELETE /api/delete against a real `owl serve`, with the real `ollama` client: a
stored model goes (unloaded first when it is loaded); an unknown one is a 404, a base+adapter
combination a 400; the store keeps every other model."""

from __future__ import annotations

import ollama
import pytest

from tests.server.conftest import Server
from tests.support.cli import owl
from tests.support.tiny_gguf import write_tiny_gguf


def names(client: ollama.Client) -> set[str]:
    return {model.model for model in client.list().models}


def test_delete_removes_a_model_and_unloads_it_first(server: Server, tmp_path) -> None:
    client = ollama.Client(host=server.base)
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert owl(server.home, "pull", str(tiny), "--name", "tiny").returncode == 0
    assert "tiny:latest" in names(client)
    client.delete("tiny")
    assert "tiny:latest" not in names(client) and "smollm2:latest" in names(client)

    client.generate(model="smollm2", prompt="Hi", options={"num_predict": 1})
    assert [m.model for m in client.ps().models] == ["smollm2:latest"]
    client.delete("smollm2")
    assert client.ps().models == [] and "smollm2:latest" not in names(client)


@pytest.mark.parametrize(("name", "status"), [("never-pulled", 404), ("smollm2+adapter", 400)])
def test_what_cannot_be_deleted_says_why(server: Server, name: str, status: int) -> None:
    with pytest.raises(ollama.ResponseError) as refused:
        ollama.Client(host=server.base).delete(name)
    assert refused.value.status_code == status
    assert name.split("+")[0] in refused.value.error or "combination" in refused.value.error
