"""`owl scan`: modelscan's exit codes, --json, --strict, folders and store names."""

from __future__ import annotations

import json
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from tests.support.cli import owl

pytestmark = pytest.mark.slow


class _Shell:
    def __reduce__(self) -> tuple:
        return (os.system, ("echo owned",))


@pytest.fixture
def evil_pickle(tmp_path: Path) -> Path:
    path = tmp_path / "evil" / "pytorch_model.bin"
    path.parent.mkdir()
    path.write_bytes(pickle.dumps({"weights": _Shell()}, protocol=4))
    return path


def _scan_json(home: Path, *args: str) -> tuple[int, dict]:
    result = owl(home, "scan", "--json", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_the_bundled_model_is_clean(owl_env: Path, bundled_gguf: Path) -> None:
    code, report = _scan_json(owl_env, str(bundled_gguf))
    assert (code, report["verdict"], report["findings"]) == (0, "clean", [])
    assert report["files"][0]["format"] == "gguf"
    by_name = owl(owl_env, "scan", "smollm2")
    assert by_name.returncode == 0 and "clean" in by_name.stdout


def test_a_pickle_that_runs_a_command_exits_1(owl_env: Path, evil_pickle: Path) -> None:
    code, report = _scan_json(owl_env, str(evil_pickle))
    assert (code, report["verdict"]) == (1, "unsafe")
    finding = report["findings"][0]
    assert finding["severity"] == "critical"
    assert finding["file"] == str(evil_pickle)
    assert "offset" in finding["location"] and "system" in finding["reason"]
    shown = owl(owl_env, "scan", str(evil_pickle))
    assert shown.returncode == 1 and "critical" in shown.stdout and "unsafe" in shown.stdout


def test_a_four_byte_gguf_is_unverified_not_clean(owl_env: Path, tmp_path: Path) -> None:
    stub = tmp_path / "model.gguf"
    stub.write_bytes(b"GGUF")
    code, report = _scan_json(owl_env, str(stub))
    assert (code, report["verdict"]) == (2, "unverified")
    assert report["files"][0]["status"] == "unverified" and report["files"][0]["error"]


def test_no_model_files_exits_3(owl_env: Path, tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# a model card, no weights\n")
    code, report = _scan_json(owl_env, str(tmp_path / "README.md"))
    assert (code, report["verdict"]) == (3, "no-supported-files")


@pytest.mark.parametrize("args", [("no-such-file.bin",), ("--no-such-option", "x"), ()])
def test_usage_errors_exit_4(owl_env: Path, args: tuple[str, ...]) -> None:
    result = owl(owl_env, "scan", *args)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr


def test_a_folder_is_scanned_whole(owl_env: Path, tmp_path: Path, evil_pickle: Path) -> None:
    folder = evil_pickle.parent
    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text("{}")
    code, report = _scan_json(owl_env, str(folder))
    assert code == 1
    statuses = {Path(entry["file"]).name: entry["status"] for entry in report["files"]}
    assert statuses == {
        "config.json": "unsupported",
        "model.safetensors": "scanned",
        "pytorch_model.bin": "scanned",
    }


def test_unsafe_outranks_unverified(owl_env: Path, tmp_path: Path, evil_pickle: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"GGUF\x03\x00")
    code, report = _scan_json(owl_env, str(evil_pickle), str(tmp_path / "broken.gguf"))
    assert (code, report["verdict"]) == (1, "unsafe")


def test_strict_makes_lesser_findings_count(owl_env: Path, tmp_path: Path) -> None:
    # A benign pickle under a name that promises safetensors: deceptive, not harmful.
    mislabelled = tmp_path / "model.safetensors"
    mislabelled.write_bytes(pickle.dumps(OrderedDict(a=1), protocol=2))
    code, report = _scan_json(owl_env, str(mislabelled))
    assert code == 0 and report["findings"], report
    assert {finding["severity"] for finding in report["findings"]} <= {"medium", "low"}
    strict_code, strict = _scan_json(owl_env, "--strict", str(mislabelled))
    assert (strict_code, strict["verdict"]) == (1, "unsafe")


def test_a_store_that_cannot_be_read_is_unverified_not_unsafe(owl_env: Path) -> None:
    damaged = owl_env / "manifests" / "broken" / "latest.json"
    damaged.parent.mkdir(parents=True)
    damaged.write_text("{not json")
    result = owl(owl_env, "scan", "broken")
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "error: " in result.stderr and "Traceback" not in result.stderr
