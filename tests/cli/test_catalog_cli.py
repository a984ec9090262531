"""`owl catalog`, run as a user runs it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from owl.catalog import entries
from tests.conftest import cli_env
from tests.support.cli import OWL, owl


def _wide(home: Path, *args: str) -> subprocess.CompletedProcess:
    """The console script in a 200-column terminal, so no table cell is cut short."""
    return subprocess.run(
        [OWL, *args],
        capture_output=True,
        text=True,
        env={**cli_env(home), "COLUMNS": "200"},
        timeout=120,
    )


def test_catalog_prints_a_table(owl_env: Path) -> None:
    result = _wide(owl_env, "catalog", "falcon")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "NAME",
        "FAMILY",
        "ORG",
        "PARAMS",
        "MODALITY",
        "ARCH",
        "LICENSE",
        "GGUF",
    ]
    assert [row.split()[0] for row in rows[:3]] == [
        "falcon-7b-instruct",
        "falcon-40b-instruct",
        "falcon-180b-chat",
    ]
    assert rows[0].split()[-1] == "yes" and rows[1].split()[-1] == "no"
    assert "falcon-180b-tii-license-1.0*" in result.stdout
    assert "gated" in rows[-1]


def test_catalog_lists_everything_without_filters(owl_env: Path) -> None:
    result = _wide(owl_env, "catalog")
    assert result.returncode == 0, result.stderr
    assert all(entry.name in result.stdout for entry in entries())


def test_catalog_json_with_filters(owl_env: Path) -> None:
    result = owl(owl_env, "catalog", "llama", "--max-params", "8B", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    names = {item["name"] for item in found}
    assert {"llama3-8b-instruct", "llama3.1-8b-instruct"} <= names
    assert "llama3.1-70b-instruct" not in names
    assert all(item["nominal_parameters"] <= 8e9 for item in found)
    first = next(item for item in found if item["name"] == "llama3.1-8b-instruct")
    assert first["license"] == "llama3.1" and first["gated"] is True
    assert first["pull_ref"].startswith("hf:bartowski/Meta-Llama-3.1-8B-Instruct-GGUF/")


def test_catalog_modality_and_license(owl_env: Path) -> None:
    result = owl(owl_env, "catalog", "--modality", "AUDIO", "--license", "cc-by-nc-4.0", "--json")
    assert result.returncode == 0, result.stderr
    names = [item["name"] for item in json.loads(result.stdout)]
    assert names and all(name.startswith("musicgen-") for name in names)


def test_catalog_with_no_match_says_so(owl_env: Path) -> None:
    result = owl(owl_env, "catalog", "no-such-model-anywhere")
    assert result.returncode == 0, result.stderr
    assert "no model in the catalog matches" in result.stdout
    empty = owl(owl_env, "catalog", "no-such-model-anywhere", "--json")
    assert empty.returncode == 0 and json.loads(empty.stdout) == []


def test_catalog_refuses_a_bad_max_params(owl_env: Path) -> None:
    result = owl(owl_env, "catalog", "--max-params", "lots")
    assert result.returncode == 2
    assert "--max-params" in result.stderr and "lots" in result.stderr
    assert "Traceback" not in result.stderr


def test_catalog_refuses_an_unknown_modality(owl_env: Path) -> None:
    result = owl(owl_env, "catalog", "--modality", "smell")
    assert result.returncode == 2
    assert "smell" in result.stderr and "Traceback" not in result.stderr


def test_catalog_marks_the_vision_models_pulled_with_their_projector(owl_env: Path) -> None:
    result = _wide(owl_env, "catalog", "--modality", "multimodal")
    assert result.returncode == 0, result.stderr
    marked = {
        row.split()[0] for row in result.stdout.splitlines() if row.rstrip().endswith("yes+mmproj")
    }
    # The families the images issue names, each with a GGUF and its mmproj.
    for family in ("smolvlm", "qwen2.5-vl", "gemma-3", "llava-1.5", "llava-1.6", "moondream"):
        assert any(name.startswith(family) for name in marked), (family, marked)
    found = json.loads(owl(owl_env, "catalog", "--modality", "multimodal", "--json").stdout)
    seeing = {item["name"] for item in found if item["sees_images"]}
    assert seeing == marked
    assert all(item["mmproj_file"] for item in found if item["name"] in seeing)
    assert "kosmos-2" in {item["name"] for item in found} - seeing  # no GGUF: not marked
