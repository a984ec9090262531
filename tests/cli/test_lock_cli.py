"""owl lock, owl pull --locked, owl serve --locked: no silent model drift."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from owl.store.aliases import aliases
from owl.store.lock import read_lock, write_lock
from tests.support.cli import owl
from tests.support.owl_server import Server, running_server
from tests.support.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.slow


def test_lock_then_pull_locked_in_a_project(owl_env: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    locked = owl(owl_env, "lock", cwd=project)
    assert locked.returncode == 0, locked.stderr
    assert "pinned smollm2" in locked.stdout
    lock = read_lock(project / "owl.lock")
    assert sorted(lock.models) == sorted(str(a.name) for a in aliases().values() if a.offline)
    assert lock.models["smollm2"].source.kind == "package"

    pulled = owl(owl_env, "pull", "--locked", cwd=project)
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled smollm2" in pulled.stdout
    again = owl(owl_env, "lock", cwd=project)
    assert "unchanged smollm2" in again.stdout

    elsewhere = owl(owl_env, "pull", "--locked", cwd=tmp_path)
    assert elsewhere.returncode == 1 and "owl lock MODEL" in elsewhere.stderr


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose lock pins smollm2 as stored, and 'tiny' with other bytes than stored."""
    root = tmp_path_factory.mktemp("locked")
    home = root / "owl-home"
    tiny = write_tiny_gguf(root / "tiny.gguf")
    assert owl(home, "pull", str(tiny)).returncode == 0
    assert owl(home, "pull", str(tiny), "--name", "unpinned").returncode == 0
    lock_path = root / "owl.lock"
    assert owl(home, "lock", "smollm2", "tiny", "--file", str(lock_path)).returncode == 0
    lock = read_lock(lock_path)
    drifted = lock.models["tiny"].files[0].model_copy(update={"digest": "sha256:" + "0" * 64})
    lock.models["tiny"] = lock.models["tiny"].model_copy(update={"files": [drifted]})
    write_lock(lock_path, lock)
    with running_server(root, args=["--locked", "--lock-file", str(lock_path)]) as server:
        yield server


def _client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0)


@pytest.mark.parametrize(
    ("model", "message"), [("tiny", "differs from owl.lock"), ("unpinned", "not in owl.lock")]
)
def test_serve_locked_refuses_what_the_lock_does_not_pin(
    locked_server: Server, model: str, message: str
) -> None:
    with pytest.raises(openai.APIStatusError) as refused:
        _client(locked_server).completions.create(model=model, prompt="hi", max_tokens=1)
    assert refused.value.status_code == 409
    assert refused.value.body["code"] == "lock_mismatch"  # type: ignore[index]
    assert message in refused.value.message


def test_serve_locked_serves_a_pinned_model(locked_server: Server) -> None:
    answer = _client(locked_server).completions.create(
        model="smollm2", prompt="Hello", max_tokens=2, temperature=0
    )
    assert answer.choices[0].text
