"""The load gate: verdicts recorded at pull, reused by digest, enforced by engine.load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from owl.config import Settings
from owl.errors import ConfigError, UnsafeModel, UnverifiedModel
from owl.pull import pull
from owl.scan import scanner_version
from owl.scan.policy import require_loadable, scan_manifest, verdict_of
from owl.store import Store
from owl.store.manifest import ScanRecord
from tests.support.gguf_edit import copy_with_template, shell_template
from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture(scope="module")
def evil_gguf(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    folder = tmp_path_factory.mktemp("evil")
    template = shell_template(folder / "pwned")
    return copy_with_template(bundled_gguf, folder / "evil.gguf", template)


def test_pull_records_a_clean_verdict_for_the_bundled_model(
    store: Store, settings: Settings
) -> None:
    manifest = pull("smollm2", store=store, settings=settings)
    record = manifest.scans[manifest.weights.digest]
    assert record.verdict == "clean" and record.findings == []
    assert record.scanner == scanner_version()
    assert require_loadable(manifest, store=store) == manifest


def test_the_same_bytes_are_not_scanned_twice(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    first = pull(str(write_tiny_gguf(tmp_path / "a.gguf")), store=store, settings=settings)
    copy = tmp_path / "copy.gguf"
    shutil.copy(tmp_path / "a.gguf", copy)
    second = pull(str(copy), store=store, settings=settings)
    digest = first.weights.digest
    assert second.weights.digest == digest and second.name == "copy"
    # The record, time included, comes from the first manifest: no second scan.
    assert second.scans[digest] == first.scans[digest]


def test_a_shell_template_is_unsafe_and_refused(
    store: Store, settings: Settings, evil_gguf: Path
) -> None:
    manifest = pull(str(evil_gguf), store=store, settings=settings)
    assert verdict_of(manifest) == "unsafe"
    findings = manifest.scans[manifest.weights.digest].findings
    assert any(f["severity"] == "critical" and "chat_template" in f["location"] for f in findings)
    with pytest.raises(UnsafeModel) as refused:
        require_loadable(manifest, store=store)
    message = str(refused.value)
    assert "evil" in message and "critical" in message and "--allow-unsafe" in message
    assert not (evil_gguf.parent / "pwned").exists()


def test_allow_unsafe_passes_and_is_written_in_the_manifest(
    store: Store, settings: Settings, evil_gguf: Path
) -> None:
    manifest = pull(str(evil_gguf), store=store, settings=settings)
    allowed = require_loadable(manifest, store=store, allow_unsafe=True, by="a test")
    saved = store.get(manifest.model_name)
    assert [(entry.verdict, entry.by) for entry in saved.allow_unsafe] == [("unsafe", "a test")]
    assert allowed.allow_unsafe == saved.allow_unsafe
    # It is per call: the next load without the flag is refused again.
    with pytest.raises(UnsafeModel):
        require_loadable(saved, store=store)


def test_a_manifest_without_a_verdict_is_scanned_before_loading(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    manifest = pull(str(write_tiny_gguf(tmp_path / "old.gguf")), store=store, settings=settings)
    legacy = manifest.model_copy(update={"scans": {}})
    store.save(legacy)
    loadable = require_loadable(legacy, store=store)
    assert verdict_of(loadable) == "clean"
    assert store.get(manifest.model_name).scans.keys() == {manifest.weights.digest}


def test_a_verdict_from_other_rules_is_made_again(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    manifest = pull(str(write_tiny_gguf(tmp_path / "m.gguf")), store=store, settings=settings)
    digest = manifest.weights.digest
    old = ScanRecord(verdict="unsafe", scanner="0.0.1+rules.old", findings=[])
    store.save(manifest.model_copy(update={"scans": {digest: old}}))
    rescanned = require_loadable(store.get(manifest.model_name), store=store)
    assert rescanned.scans[digest].scanner == scanner_version()
    assert rescanned.scans[digest].verdict == "clean"


def test_a_damaged_blob_becomes_unverified_and_is_refused(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    manifest = pull(str(write_tiny_gguf(tmp_path / "m.gguf")), store=store, settings=settings)
    blob = store.blobs.path(manifest.weights.digest)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:100])  # cut inside the tensor table
    reports, rescanned = scan_manifest(manifest, store=store)
    assert [report.status for report in reports] == ["unverified"]
    assert verdict_of(rescanned) == "unverified"
    with pytest.raises(UnverifiedModel, match="could not be verified"):
        require_loadable(rescanned, store=store)


def _advise_against(path: Path, digest: str) -> Path:
    path.write_text(
        f'[[model]]\nid = "TEST-MAL-1"\nsummary = "a backdoored copy"\n'
        f'url = "https://advisories.example/1"\ndigests = ["{digest}"]\n',
        encoding="utf-8",
    )
    return path


def test_a_model_an_advisory_names_is_refused_even_with_allow_unsafe(
    store: Store, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = pull("smollm2", store=store, settings=settings)
    assert verdict_of(manifest) == "clean"  # the scan has nothing against it: the advisory does
    monkeypatch.setenv(
        "OWL_ADVISORIES", str(_advise_against(tmp_path / "mine.toml", manifest.weights.digest))
    )
    for allow_unsafe in (False, True):
        with pytest.raises(UnsafeModel) as refused:
            require_loadable(manifest, store=store, allow_unsafe=allow_unsafe)
        message = str(refused.value)
        assert "TEST-MAL-1" in message and "https://advisories.example/1" in message
        assert "owl rm smollm2" in message and "not even with --allow-unsafe" in message
    assert store.get(manifest.model_name).allow_unsafe == []  # no override was recorded


def test_a_broken_advisory_file_stops_the_load_with_the_setting_named(
    store: Store, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = pull("smollm2", store=store, settings=settings)
    broken = tmp_path / "broken.toml"
    broken.write_text("[[model]\n", encoding="utf-8")
    monkeypatch.setenv("OWL_ADVISORIES", str(broken))
    with pytest.raises(ConfigError, match="OWL_ADVISORIES names .*broken.toml"):
        require_loadable(manifest, store=store)


def test_engine_load_takes_the_advisories_of_the_settings_it_is_handed(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    # A server gets its settings from create_app(settings), not from the environment: the
    # advisory file they name must stop engine.load with OWL_ADVISORIES unset.
    from owl import engine

    manifest = pull("smollm2", store=store, settings=settings)
    mine = _advise_against(tmp_path / "mine.toml", manifest.weights.digest)
    handed = settings.model_copy(update={"advisories": mine})
    for capability in (engine.Capability.CHAT, engine.Capability.EMBED):
        with pytest.raises(UnsafeModel, match="TEST-MAL-1"):
            engine.load(manifest, store=store, settings=handed, capability=capability)
