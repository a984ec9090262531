"""`owl eval perplexity | kld` as a user runs them: a real process, JSON on the last line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import owl

GPL3 = Path("/usr/share/common-licenses/GPL-3")


@pytest.fixture
def text(tmp_path: Path) -> Path:
    """The start of the GPL-3: about 220 SmolLM2 tokens, three chunks of 64."""
    path = tmp_path / "gpl3-start.txt"
    path.write_text(GPL3.read_text()[:1000])
    return path


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_perplexity_json(owl_env: Path, text: Path) -> None:
    done = owl(
        owl_env,
        "eval",
        "perplexity",
        "smollm2",
        "--text",
        str(text),
        "--ctx",
        "64",
        "--threads",
        "1",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    assert {"perplexity", "stderr", "tokens", "chunks", "ctx", "model", "text"} <= set(result)
    assert (result["model"], result["ctx"], result["text"]) == ("smollm2", 64, str(text))
    assert result["chunks"] >= 3 and result["tokens"] == result["chunks"] * 31
    assert 1 < result["perplexity"] < 100 and result["stderr"] > 0


@pytest.mark.slow
def test_perplexity_for_people(owl_env: Path, text: Path) -> None:
    done = owl(
        owl_env,
        "eval",
        "perplexity",
        "smollm2",
        "--text",
        str(text),
        "--ctx",
        "64",
        "--threads",
        "1",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("perplexity of smollm2 on gpl3-start.txt (ctx 64): ")
    assert "±" in done.stdout and "tokens scored in" in done.stdout


@pytest.mark.slow
def test_kld_json(owl_env: Path, text: Path) -> None:
    args = ["eval", "kld", "smollm2", "--reference", "smollm2", "--text", str(text)]
    done = owl(owl_env, *args, "--ctx", "64", "--threads", "1", "--json")
    assert done.returncode == 0, done.stderr
    result = last_json(done.stdout)
    keys = {"kld_mean", "kld_p99", "kld_median", "top1_agreement", "perplexity"}
    assert keys | {"reference_perplexity", "tokens", "chunks"} <= set(result)
    assert result["kld_mean"] == 0 and result["top1_agreement"] == 1
    assert result["perplexity"] == result["reference_perplexity"]


@pytest.mark.slow
def test_a_short_text_is_one_line_of_error(owl_env: Path, tmp_path: Path) -> None:
    short = tmp_path / "short.txt"
    short.write_text("Everyone is permitted to copy and distribute verbatim copies.\n")
    args = ["eval", "perplexity", "smollm2", "--text", str(short)]
    done = owl(owl_env, *args, "--threads", "1", "--json")
    assert done.returncode == 1
    assert done.stderr.startswith("error: ") and "needs at least 512" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


def test_eval_needs_a_text(owl_env: Path) -> None:
    done = owl(owl_env, "eval", "perplexity", "smollm2")
    assert done.returncode != 0 and "--text" in done.stderr
