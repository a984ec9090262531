"""`owl license check` as a user runs it: verdicts, exit codes, --json, stored models."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from owl.store import FileEntry, Manifest, RefKind, Source, Store
from owl.store.manifest import Parent
from tests.support.cli import owl

pytestmark = pytest.mark.slow


def _check_json(home: Path, *args: str) -> tuple[int, dict]:
    result = owl(home, "license", "check", *args, "--json")
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def _manifest(name: str, license: str, parents: list[Parent] | None = None) -> Manifest:
    digest = "sha256:" + hashlib.sha256(name.encode()).hexdigest()
    return Manifest(
        name=name,
        format="gguf",
        files=[FileEntry(filename=f"{name}.gguf", digest=digest, size=1)],
        source=Source(kind=RefKind.FILE, uri=f"/models/{name}.gguf"),
        license=license,
        license_sources={"gguf": license},
        parents=parents or [],
    )


def test_the_embedded_model_may_be_used_commercially(owl_env: Path) -> None:
    result = owl(owl_env, "license", "check", "smollm2", "--use", "commercial")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("conditional: commercial use, model smollm2")
    assert "Apache License 2.0 (Apache-2.0)" in result.stdout
    assert "NOTICE" in result.stdout and "§4(a)" in result.stdout


def test_a_noncommercial_license_denies_commercial_use(owl_env: Path) -> None:
    result = owl(owl_env, "license", "check", "cc-by-nc-4.0", "--use", "commercial")
    assert result.returncode == 1
    assert result.stdout.startswith("denied: commercial use, license cc-by-nc-4.0")
    assert "NonCommercial" in result.stdout
    assert owl(owl_env, "license", "check", "cc-by-nc-4.0", "--use", "research").returncode == 0


def test_unknown_terms_need_a_person(owl_env: Path) -> None:
    code, verdict = _check_json(owl_env, "acme-model-license", "--use", "personal")
    assert (code, verdict["verdict"], verdict["license"]) == (2, "review", "acme-model-license")
    assert "'acme-model-license' is neither a stored model nor a license" in verdict["reasons"][0]
    shown = owl(owl_env, "license", "check", "other", "--use", "personal")
    assert shown.returncode == 2 and shown.stdout.startswith("review")


def test_json_shape_and_the_user_cap(owl_env: Path) -> None:
    args = ("Llama-3.1", "--use", "hosted", "--monthly-users")
    code, at_cap = _check_json(owl_env, *args, "700000000")
    assert list(at_cap) == ["license", "verdict", "obligations", "reasons"]
    assert (code, at_cap["license"], at_cap["verdict"]) == (0, "llama3.1", "conditional")
    assert any("Built with Llama" in line for line in at_cap["obligations"])
    code, above = _check_json(owl_env, *args, "700000001")
    assert (code, above["verdict"], above["obligations"]) == (1, "denied", [])
    assert "more than 700,000,000 monthly active users" in above["reasons"][0]


def test_a_quantized_llama_carries_llamas_terms(owl_env: Path) -> None:
    store = Store(owl_env)
    parent = _manifest("llama3.1-8b", "llama3.1")
    store.save(parent)
    link = Parent(name="llama3.1-8b", digest=parent.weights.digest, relation="quantized")
    store.save(_manifest("llama3.1-8b.q4", "apache-2.0", parents=[link]))
    code, verdict = _check_json(owl_env, "llama3.1-8b.q4", "--use", "commercial")
    assert (code, verdict["license"], verdict["verdict"]) == (0, "apache-2.0", "conditional")
    assert any('name beginning with "Llama"' in line for line in verdict["obligations"])
    assert "derived (quantized) from llama3.1-8b: its terms carry over" in verdict["reasons"]


def test_usage_errors_exit_4(owl_env: Path) -> None:
    result = owl(owl_env, "license", "check", "mit", "--use", "resale")
    assert result.returncode == 4 and "--use" in result.stderr
    assert owl(owl_env, "license", "check", "mit").returncode == 4
