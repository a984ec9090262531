"""The `owl` console script, run as a user runs it: a real process, the real model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from owl.store.aliases import aliases
from tests.support.cli import TerminalSession, owl

pytestmark = pytest.mark.slow


def test_run_streams_an_answer_from_the_embedded_model(owl_env: Path) -> None:
    result = owl(
        owl_env,
        "run",
        "smollm2",
        "Why is the sky blue?",
        "--temperature",
        "0",
        "--max-tokens",
        "12",
    )
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.split()) >= 3
    assert "Traceback" not in result.stderr
    # llama.cpp's own log (a thousand lines per context) stays out of the terminal.
    assert "llama_context" not in result.stderr and len(result.stderr.splitlines()) < 5


def test_run_reads_the_prompt_from_a_pipe(owl_env: Path) -> None:
    piped = owl(
        owl_env, "run", "smollm2", "--temperature", "0", "--max-tokens", "8", stdin="Say hello."
    )
    argued = owl(owl_env, "run", "smollm2", "Say hello.", "--temperature", "0", "--max-tokens", "8")
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == argued.stdout and piped.stdout.strip()


def test_interactive_chat_keeps_the_conversation(owl_env: Path) -> None:
    chat = TerminalSession(owl_env, "run", "smollm2", "--temperature", "0", "--max-tokens", "10")
    chat.read_until(b">>> ", 1)
    chat.type("Hello!")
    chat.read_until(b">>> ", 2)
    chat.type("What did I just say?")
    chat.read_until(b">>> ", 3)
    chat.type("/bye")
    assert chat.close(timeout=30) == 0
    transcript = chat.transcript
    assert "chatting with smollm2" in transcript
    answers = [part.split("\n", 1)[1].strip() for part in transcript.split(">>> ")[1:3]]
    assert all(answers), transcript


def test_list_and_show(owl_env: Path) -> None:
    listed = owl(owl_env, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    entry = next(m for m in json.loads(listed.stdout) if m["name"] == "smollm2")
    assert entry["name"] == "smollm2" and entry["info"]["quantization"] == "Q4_1"
    table = owl(owl_env, "list")
    assert "NAME" in table.stdout and "smollm2" in table.stdout and "apache-2.0" in table.stdout
    assert "SCAN" in table.stdout and "clean" in table.stdout
    assert entry["scans"][entry["files"][0]["digest"]]["verdict"] == "clean"
    shown = json.loads(owl(owl_env, "show", "smollm2", "--json").stdout)
    assert shown["architecture"] == "llama"
    assert 130_000_000 < shown["parameters"] < 140_000_000
    assert shown["quantization"] == "Q4_1"
    assert shown["context_length"] == 8192
    assert shown["license"] == "apache-2.0"
    assert shown["defaults"] == {"temperature": 0.2, "top_p": 0.9}
    assert "<|im_start|>" in shown["chat_template"]
    assert shown["digest"] == entry["files"][0]["digest"]
    assert shown["source"]["kind"] == "package"
    assert shown["scan"] == "clean"
    text = owl(owl_env, "show", "smollm2").stdout
    for field in (
        "architecture",
        "parameters",
        "quantization",
        "context length",
        "license",
        "digest",
        "chat template",
    ):
        assert field in text


def test_pull_list_rm_a_local_file(owl_env: Path, bundled_gguf: Path, tmp_path: Path) -> None:
    local = tmp_path / "tiny.gguf"
    shutil.copy(bundled_gguf, local)
    pulled = owl(owl_env, "pull", str(local))
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled tiny" in pulled.stdout
    names = [entry["name"] for entry in json.loads(owl(owl_env, "list", "--json").stdout)]
    assert names == sorted([*sorted(str(a.name) for a in aliases().values() if a.offline), "tiny"])
    clash = owl(owl_env, "pull", str(local), "--name", "smollm2")
    assert clash.returncode == 1 and "--name" in clash.stderr
    removed = owl(owl_env, "rm", "tiny")
    assert removed.returncode == 0 and "deleted tiny" in removed.stdout
    names = [entry["name"] for entry in json.loads(owl(owl_env, "list", "--json").stdout)]
    assert names == sorted(str(a.name) for a in aliases().values() if a.offline)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("run", "no-such-model", "hi"), "not in the store"),
        (("pull", "./missing.gguf"), "no such file"),
        (("pull", "no-such-model"), "not a built-in name"),
        (("show", "bad name!"), "invalid model name"),
        (("rm", "../etc"), "invalid model name"),
        (("rm", "ghost"), "not in the store"),
        (("pull", "https://127.0.0.1:9/m.gguf"), "check the URL and the connection"),
        (("run", "smollm2", "hi", "--temperature", "-1"), "--temperature: Input should be greater"),
    ],
)
def test_errors_are_one_clear_line(owl_env: Path, args: tuple[str, ...], message: str) -> None:
    result = owl(owl_env, *args)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    if result.returncode == 1:
        assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1


def test_show_reads_a_file_that_is_not_in_the_store(owl_env: Path, bundled_gguf: Path) -> None:
    shown = owl(owl_env, "show", str(bundled_gguf), "--json")
    assert shown.returncode == 0, shown.stderr
    details = json.loads(shown.stdout)
    assert details["path"] == str(bundled_gguf.resolve())
    assert (details["architecture"], details["quantization"]) == ("llama", "Q4_1")
    # Reading it pulled nothing.
    assert not (owl_env / "manifests").exists() or not list((owl_env / "manifests").glob("*/*"))
    template = owl(owl_env, "show", str(bundled_gguf), "--template")
    assert template.stdout.startswith("{% for message in messages %}")
