"""End to end: a copy of the bundled model whose chat template runs a shell command.

`owl pull` keeps it with an unsafe verdict, `owl run` and `owl serve` refuse it, and with
--allow-unsafe the sandbox still stops the template: the command never runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.cli import owl
from tests.support.gguf_edit import copy_with_template, shell_template
from tests.support.owl_server import Server, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evil(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> tuple[Path, Path]:
    """(the malicious GGUF, the file its template tries to create)."""
    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "pwned"
    return copy_with_template(bundled_gguf, folder / "evil.gguf", shell_template(marker)), marker


@pytest.fixture(scope="module")
def served_root(tmp_path_factory: pytest.TempPathFactory, evil: tuple[Path, Path]) -> Path:
    """An OWL_HOME (root/owl-home) holding the malicious model as 'evil'."""
    root = tmp_path_factory.mktemp("serve-evil")
    pulled = owl(root / "owl-home", "pull", str(evil[0]), "--name", "evil")
    assert pulled.returncode == 0, pulled.stderr
    return root


def test_pull_keeps_it_and_warns(served_root: Path) -> None:
    listed = json.loads(owl(served_root / "owl-home", "show", "evil", "--json").stdout)
    assert listed["scan"] == "unsafe"


def test_owl_run_refuses_it(owl_env: Path, evil: tuple[Path, Path]) -> None:
    gguf, marker = evil
    pulled = owl(owl_env, "pull", str(gguf), "--name", "evil")
    assert pulled.returncode == 0
    assert "warning: evil is unsafe" in pulled.stderr and "critical" in pulled.stderr

    for target in ("evil", str(gguf)):
        refused = owl(owl_env, "run", target, "hi", "--max-tokens", "4")
        assert refused.returncode == 1
        assert refused.stderr.startswith("error: model 'evil' is unsafe")
        assert "__globals__" in refused.stderr or "cycler" in refused.stderr
        assert "Traceback" not in refused.stderr
    scanned = owl(owl_env, "scan", "evil")
    assert scanned.returncode == 1 and "critical" in scanned.stdout
    assert not marker.exists()


def test_allow_unsafe_loads_it_but_the_sandbox_still_holds(
    owl_env: Path, evil: tuple[Path, Path]
) -> None:
    gguf, marker = evil
    assert owl(owl_env, "pull", str(gguf), "--name", "evil").returncode == 0
    allowed = owl(owl_env, "run", "evil", "hi", "--max-tokens", "4", "--allow-unsafe")
    assert allowed.returncode == 1
    assert "unsafe operation" in allowed.stderr and "Traceback" not in allowed.stderr
    assert not marker.exists()
    manifest = json.loads(next((owl_env / "manifests").glob("evil/*.json")).read_text())
    assert [entry["by"] for entry in manifest["allow_unsafe"]] == ["owl run --allow-unsafe"]


def _chat(server: Server, model: str) -> openai.APIStatusError:
    client = openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.APIStatusError) as failed:
        client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
    return failed.value


@pytest.fixture
def server(served_root: Path) -> Iterator[Server]:
    with running_server(served_root) as running:
        yield running


@pytest.fixture
def lenient_server(served_root: Path) -> Iterator[Server]:
    with running_server(served_root, args=["--allow-unsafe", "evil"]) as running:
        yield running


def test_owl_serve_refuses_it(server: Server, evil: tuple[Path, Path]) -> None:
    error = _chat(server, "evil")
    assert error.status_code == 403
    assert error.body["code"] == "unsafe_model"  # type: ignore[index]
    assert "critical" in error.message and "owl serve --allow-unsafe evil" in error.message
    assert not evil[1].exists()


def test_owl_serve_allow_unsafe_still_sandboxes(
    lenient_server: Server, evil: tuple[Path, Path]
) -> None:
    error = _chat(lenient_server, "evil")
    assert error.status_code == 400
    assert "unsafe operation" in error.message
    assert not evil[1].exists()
