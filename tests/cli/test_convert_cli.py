"""`owl convert` as a user runs it: a real process over a temp OWL_HOME.

The folder is the tiny random-weight llama (tests/support/tiny_models.py, SmolLM2's
tokenizer): the command's path is the same for any llama folder, and converting it takes
seconds where SmolLM2 took a minute. SmolLM2's own conversion, and what the converted model
computes, is tests/quantize/test_convert.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.quantize.converter import llama_cpp_version
from tests.quantize.test_convert import shared_tools
from tests.support.cli import owl
from tests.support.tiny_lora import tiny_llama_folder


@pytest.fixture
def home_with_converter(owl_env: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OWL_HOME whose tools folder already has the converter (fetched once per session)."""
    name = f"llama.cpp-converter-{llama_cpp_version()}"
    shared = shared_tools(tmp_path_factory.getbasetemp()) / name
    (owl_env / "tools").mkdir(parents=True)
    (owl_env / "tools" / name).symlink_to(shared)
    return owl_env


@pytest.mark.slow
def test_convert_stores_a_gguf_that_show_describes(
    home_with_converter: Path, tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path
) -> None:
    folder = tiny_llama_folder(tmp_path_factory.getbasetemp(), bundled_gguf)
    done = owl(home_with_converter, "convert", str(folder), "--name", "smol", "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["name"] == "smol" and manifest["tag"] == "f16"
    assert manifest["parents"][0]["relation"] == "converted"
    assert manifest["parents"][0]["name"] == str(folder.resolve())

    shown = owl(home_with_converter, "show", "smol:f16", "--json")
    assert shown.returncode == 0, shown.stderr
    details = json.loads(shown.stdout)
    assert details["architecture"] == "llama"
    assert details["quantization"] == "F16"
    assert details["scan"] == "clean"
    assert details["license"] == "apache-2.0"

    again = owl(home_with_converter, "convert", str(folder), "--name", "smol")
    assert again.returncode == 0, again.stderr
    assert "converted smol:f16 (llama, 6.4M parameters, F16" in again.stdout


def test_convert_errors_say_what_to_do(owl_env: Path, tmp_path: Path) -> None:
    missing = owl(owl_env, "convert", str(tmp_path / "absent"))
    assert missing.returncode == 1
    assert "error: no such folder" in missing.stderr
    assert "Traceback" not in missing.stderr

    (tmp_path / "weights").mkdir()
    no_config = owl(owl_env, "convert", str(tmp_path / "weights"))
    assert no_config.returncode == 1
    assert "is not a Hugging Face model folder: it has no config.json" in no_config.stderr

    stored = owl(owl_env, "convert", "smollm2")
    assert stored.returncode == 1
    assert "owl convert takes a Hugging Face model folder" in stored.stderr

    bad_type = owl(owl_env, "convert", str(tmp_path / "weights"), "--outtype", "q4_0")
    assert bad_type.returncode == 2
    assert "q4_0" in bad_type.stderr
    assert not (owl_env / "tools").exists()  # nothing was fetched for any of these
