"""`owl doctor`: the runtime and the stored models against advisories, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.store.blobs import sha256_file
from tests.support.cli import owl


def _doctor(home: Path, *args: str) -> tuple[int, str, str]:
    result = owl(home, "doctor", *args)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, result.stdout, result.stderr


def test_a_clean_runtime_and_store_exit_0(owl_env: Path) -> None:
    code, out, _ = _doctor(owl_env, "--json")
    report = json.loads(out)
    assert code == 0 and report["verdict"] == "clean"
    packages = {check["package"] for check in report["runtime"]}
    assert {"llama-cpp-python", "jinja2", "torch", "transformers", "gguf"} <= packages
    assert "smollm2" in [model["model"] for model in report["models"]]  # the embedded ones


def test_an_advised_model_and_package_exit_1_with_the_advisory_named(
    owl_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bundled_gguf: Path
) -> None:
    advisories = tmp_path / "team.toml"
    advisories.write_text(
        f"""
[[model]]
id = "TEAM-2026-1"
summary = "a poisoned build"
digests = ["{sha256_file(bundled_gguf)}"]

[[runtime]]
id = "TEAM-2026-2"
package = "jinja2"
affected = ">=0"
severity = "high"
summary = "every jinja2, for this test"
fix = "pip install jinja2==9"
""",
        encoding="utf-8",
    )
    monkeypatch.setenv("OWL_ADVISORIES", str(advisories))
    code, out, _ = _doctor(owl_env, "--json")
    report = json.loads(out)
    assert code == 1 and report["verdict"] == "affected"
    model = next(model for model in report["models"] if model["model"] == "smollm2")
    assert [item["id"] for item in model["advisories"]] == ["TEAM-2026-1"]
    assert all(not m["advisories"] for m in report["models"] if m["model"] != "smollm2")
    jinja = next(check for check in report["runtime"] if check["package"] == "jinja2")
    assert [item["id"] for item in jinja["advisories"]] == ["TEAM-2026-2"]

    code, out, _ = _doctor(owl_env)
    assert code == 1
    assert "TEAM-2026-1" in out and "owl rm smollm2" in out and "pip install jinja2==9" in out


def test_a_broken_advisory_file_exits_2_with_one_line(
    owl_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWL_ADVISORIES", str(tmp_path / "absent.toml"))
    code, out, err = _doctor(owl_env)
    assert code == 2 and out == ""
    assert err.startswith("error: OWL_ADVISORIES names") and "does not exist" in err


def test_a_wrong_option_exits_4(owl_env: Path) -> None:
    code, _, err = _doctor(owl_env, "--no-such-option")
    assert code == 4 and "No such option" in err
