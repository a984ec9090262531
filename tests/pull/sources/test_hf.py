"""Pulls from the Hugging Face Hub source, against a loopback server that answers like the Hub
(tests/support/hub.py says how huggingface_hub talks to it)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest

from owl.config import load_settings
from owl.errors import (
    DigestMismatch,
    DownloadError,
    InvalidModelName,
    ModelNotFound,
    SourceNotFound,
)
from owl.pull import open_store, pull
from owl.store import RefKind
from tests.support.fileserver import FileServer
from tests.support.hub import (
    COMMIT,
    TAG_COMMIT,
    Hub,
    assert_nothing_stored,
    isolate_hf_cache,
    offline_settings,
    sha256_hex,
)
from tests.support.tiny_gguf import write_tiny_gguf


@pytest.fixture(autouse=True)
def hf_cache(owl_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's Hugging Face cache (tests.support.hub.isolate_hf_cache)."""
    return isolate_hf_cache(monkeypatch)


@pytest.fixture
def hub(tmp_path: Path):
    with FileServer() as server:
        yield Hub(server, tmp_path / "hub-files")


def test_pull_from_the_hub_stores_the_file_with_its_commit(hub, monkeypatch, hf_cache):
    model = write_tiny_gguf(hub.files / "model.gguf")
    sha = hub.add_file("Org/Repo", "model.gguf", model)
    card = hub.files / "README.md"
    card.write_text("---\nlicense: llama3.1\ntags: [gguf]\n---\n# A model card\n")
    hub.add_file("Org/Repo", "README.md", card, revision=COMMIT)
    config = hub.settings(monkeypatch)
    store = open_store(config)

    manifest = pull("hf:Org/Repo/model.gguf", store=store, settings=config)

    assert manifest.name == "model"
    assert manifest.source.kind is RefKind.HF
    assert manifest.source.uri == "hf:Org/Repo/model.gguf"
    assert manifest.source.revision == COMMIT
    assert manifest.files[0].digest == f"sha256:{sha}"
    assert manifest.files[0].filename == "model.gguf"
    assert manifest.files[0].size == model.stat().st_size
    assert manifest.info["architecture"] == "llama"
    assert store.blobs.path(manifest.files[0].digest).read_bytes() == model.read_bytes()
    assert store.list() == [manifest]
    # The model card, read at the same commit, names the license.
    assert manifest.license == "llama3.1"
    assert manifest.license_sources == {"card": "llama3.1"}
    # It went through the Hub protocol and the HF cache, not around them.
    card_path = f"/Org/Repo/resolve/{COMMIT}/README.md"
    assert hub.paths("HEAD") == ["/Org/Repo/resolve/main/model.gguf", card_path]
    assert hub.paths("GET") == ["/Org/Repo/resolve/main/model.gguf", card_path]
    repo_cache = hf_cache / "models--Org--Repo"
    assert (repo_cache / "blobs" / sha).is_file()
    assert (repo_cache / "refs" / "main").read_text() == COMMIT


def test_a_named_revision_is_pulled_and_its_commit_recorded(hub, monkeypatch):
    main = write_tiny_gguf(hub.files / "main" / "model.gguf", rows=32)
    tagged = write_tiny_gguf(hub.files / "v1" / "model.gguf", rows=48)
    hub.add_file("Org/Repo", "model.gguf", main)
    sha = hub.add_file("Org/Repo", "model.gguf", tagged, revision="v1.0", commit=TAG_COMMIT)
    config = hub.settings(monkeypatch)
    store = open_store(config)

    manifest = pull("hf:Org/Repo/model.gguf@v1.0", store=store, settings=config)

    assert manifest.files[0].digest == f"sha256:{sha}" != f"sha256:{sha256_hex(main)}"
    assert manifest.source.revision == TAG_COMMIT
    assert hub.paths("GET") == ["/Org/Repo/resolve/v1.0/model.gguf"]


def test_a_commit_revision_is_pulled(hub, monkeypatch):
    model = write_tiny_gguf(hub.files / "model.gguf")
    sha = hub.add_file("Org/Repo", "model.gguf", model, revision=COMMIT)
    config = hub.settings(monkeypatch)

    manifest = pull(f"hf:Org/Repo/model.gguf@{COMMIT}", store=open_store(config), settings=config)

    assert manifest.files[0].digest == f"sha256:{sha}"
    assert manifest.source.revision == COMMIT


def test_bytes_that_do_not_match_the_hub_sha256_store_nothing(hub, monkeypatch):
    model = write_tiny_gguf(hub.files / "model.gguf")
    claimed = "ab" * 32
    hub.add_file("Org/Repo", "model.gguf", model, etag=claimed)
    config = hub.settings(monkeypatch)
    store = open_store(config)

    with pytest.raises(DigestMismatch) as caught:
        pull("hf:Org/Repo/model.gguf", store=store, settings=config)

    assert f"sha256:{claimed}" in str(caught.value)
    assert f"sha256:{sha256_hex(model)}" in str(caught.value)
    assert_nothing_stored(store)


def test_an_unknown_repository_is_source_not_found(hub, monkeypatch):
    hub.server.add_error("/Org/Nope/resolve/main/model.gguf", 404, {"X-Error-Code": "RepoNotFound"})
    config = hub.settings(monkeypatch)
    store = open_store(config)

    with pytest.raises(SourceNotFound) as caught:
        pull("hf:Org/Nope/model.gguf", store=store, settings=config)

    assert "no such repository" in str(caught.value)
    assert_nothing_stored(store)


def test_a_missing_file_is_source_not_found(hub, monkeypatch):
    hub.add_file("Org/Repo", "model.gguf", write_tiny_gguf(hub.files / "model.gguf"))
    config = hub.settings(monkeypatch)
    store = open_store(config)

    with pytest.raises(SourceNotFound) as caught:
        pull("hf:Org/Repo/missing.gguf", store=store, settings=config)

    assert "missing.gguf" in str(caught.value)
    assert_nothing_stored(store)


def test_an_unknown_revision_is_source_not_found(hub, monkeypatch):
    hub.server.add_error(
        "/Org/Repo/resolve/nope/model.gguf", 404, {"X-Error-Code": "RevisionNotFound"}
    )
    config = hub.settings(monkeypatch)

    with pytest.raises(SourceNotFound) as caught:
        pull("hf:Org/Repo/model.gguf@nope", store=open_store(config), settings=config)

    assert "nope" in str(caught.value)


def test_offline_a_file_in_the_hf_cache_is_pulled_without_the_hub(monkeypatch, tmp_path):
    with FileServer() as server:
        hub = Hub(server, tmp_path / "hub-files")
        model = write_tiny_gguf(hub.files / "model.gguf")
        sha = hub.add_file("Org/Repo", "model.gguf", model)
        online = hub.settings(monkeypatch)
        pull("hf:Org/Repo/model.gguf", store=open_store(online), settings=online)
    served = len(server.requests)
    # The server is gone; a fresh OWL_HOME must be filled from the HF cache alone.
    config = offline_settings(monkeypatch, tmp_path / "second-home")
    store = open_store(config)

    manifest = pull("hf:Org/Repo/model.gguf", store=store, settings=config)

    assert len(server.requests) == served
    assert manifest.files[0].digest == f"sha256:{sha}"
    assert manifest.source.revision == COMMIT
    assert store.blobs.path(manifest.files[0].digest).read_bytes() == model.read_bytes()


def build_hf_cache(
    cache: Path, repo: str, filename: str, data: bytes, *, commit: str = COMMIT
) -> str:
    """The layout huggingface_hub keeps: blobs by sha256, snapshots by commit, refs by name."""
    sha = hashlib.sha256(data).hexdigest()
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "blobs").mkdir(parents=True)
    (repo_dir / "blobs" / sha).write_bytes(data)
    snapshot = repo_dir / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / filename).symlink_to(Path("..", "..", "blobs", sha))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(commit)
    return sha


def test_offline_a_hand_built_hf_cache_is_used(monkeypatch, tmp_path, hf_cache):
    data = write_tiny_gguf(tmp_path / "src" / "model.gguf").read_bytes()
    sha = build_hf_cache(hf_cache, "Org/Repo", "model.gguf", data)
    config = offline_settings(monkeypatch, tmp_path / "home")
    store = open_store(config)

    latest = pull("hf:Org/Repo/model.gguf", store=store, settings=config)
    pinned = pull(f"hf:Org/Repo/model.gguf@{COMMIT}", store=store, settings=config, name="pinned")

    for manifest in (latest, pinned):
        assert manifest.files[0].digest == f"sha256:{sha}"
        assert manifest.source.revision == COMMIT
    assert store.blobs.digests() == {f"sha256:{sha}"}


def test_offline_with_an_empty_cache_says_so(monkeypatch, tmp_path):
    config = offline_settings(monkeypatch, tmp_path / "home")
    store = open_store(config)

    with pytest.raises(DownloadError) as caught:
        pull("hf:Org/Repo/model.gguf", store=store, settings=config)

    assert "offline" in str(caught.value).lower()
    assert_nothing_stored(store)


def test_a_repository_without_a_file_name_gives_its_only_gguf(hub, monkeypatch):
    model = write_tiny_gguf(hub.files / "model.Q4_0.gguf")
    sha = hub.add_file("Org/Repo", "model.Q4_0.gguf", model)
    hub.add_tree("Org/Repo", [".gitattributes", "README.md", "model.Q4_0.gguf"])
    config = hub.settings(monkeypatch)

    manifest = pull("hf:Org/Repo", store=open_store(config), settings=config)

    assert manifest.name == "repo"
    assert manifest.source.uri == "hf:Org/Repo/model.Q4_0.gguf"
    assert manifest.files[0].filename == "model.Q4_0.gguf"
    assert manifest.files[0].digest == f"sha256:{sha}"
    assert "/api/models/Org/Repo/tree/main" in hub.paths("GET")


def test_a_repository_with_several_ggufs_prefers_q4_k_m(hub, monkeypatch):
    model = write_tiny_gguf(hub.files / "m-Q4_K_M.gguf")
    sha = hub.add_file("Org/Repo", "m-Q4_K_M.gguf", model)
    hub.add_tree("Org/Repo", ["m-Q8_0.gguf", "m-Q4_K_M.gguf", "m-Q2_K.gguf"])
    config = hub.settings(monkeypatch)

    manifest = pull("hf:Org/Repo", store=open_store(config), settings=config)

    assert manifest.files[0].filename == "m-Q4_K_M.gguf"
    assert manifest.files[0].digest == f"sha256:{sha}"


def test_a_repository_with_no_clear_choice_asks_for_a_file(hub, monkeypatch):
    hub.add_tree("Org/Repo", ["a-F16.gguf", "b-F16.gguf"])
    config = hub.settings(monkeypatch)
    store = open_store(config)

    with pytest.raises(InvalidModelName) as caught:
        pull("hf:Org/Repo", store=store, settings=config)

    assert "a-F16.gguf" in str(caught.value) and "hf:Org/Repo/FILE" in str(caught.value)
    assert_nothing_stored(store)


def test_a_repository_without_gguf_is_source_not_found(hub, monkeypatch):
    hub.add_tree("Org/Repo", ["config.json", "pytorch_model.bin"])
    config = hub.settings(monkeypatch)

    with pytest.raises(SourceNotFound) as caught:
        pull("hf:Org/Repo", store=open_store(config), settings=config)

    assert "no .gguf" in str(caught.value)


def test_offline_a_repository_without_a_file_name_picks_from_the_cache(monkeypatch, tmp_path):
    with FileServer() as server:
        hub = Hub(server, tmp_path / "hub-files")
        sha = hub.add_file("Org/Repo", "model.gguf", write_tiny_gguf(hub.files / "model.gguf"))
        hub.add_tree("Org/Repo", ["README.md", "model.gguf"])
        online = hub.settings(monkeypatch)
        pull("hf:Org/Repo", store=open_store(online), settings=online)
    served = len(server.requests)
    config = offline_settings(monkeypatch, tmp_path / "second-home")

    manifest = pull("hf:Org/Repo", store=open_store(config), settings=config)

    assert len(server.requests) == served, "offline, nothing asks the Hub for the file list"
    assert manifest.files[0].digest == f"sha256:{sha}"
    assert manifest.source.uri == "hf:Org/Repo/model.gguf"


def test_offline_a_repository_without_a_file_name_and_no_cache_says_so(monkeypatch, tmp_path):
    config = offline_settings(monkeypatch, tmp_path / "home")

    with pytest.raises(DownloadError) as caught:
        pull("hf:Org/Repo", store=open_store(config), settings=config)

    assert "offline" in str(caught.value).lower()


def test_a_hub_that_cannot_be_reached_is_a_download_error(monkeypatch):
    from huggingface_hub.utils import _http

    # huggingface_hub retries a refused connection with back-off (about 23 s); skip the waits.
    monkeypatch.setattr(_http, "time", SimpleNamespace(sleep=lambda _seconds: None))
    config = load_settings()  # HF_ENDPOINT: the discard port the fixture set, nothing listens
    store = open_store(config)

    for ref in ("hf:Org/Repo/model.gguf", "hf:Org/Repo"):
        with pytest.raises(DownloadError):
            pull(ref, store=store, settings=config)
    assert_nothing_stored(store)


def test_a_catalog_name_pulls_its_gguf_with_the_catalog_license(hub, monkeypatch, hf_cache):
    from owl.catalog import find

    entry = find("llama3.1-8b-instruct")
    assert entry is not None and entry.gguf_repo and entry.gguf_file
    hub.add_file(entry.gguf_repo, entry.gguf_file, write_tiny_gguf(hub.files / "m.gguf"))
    config = hub.settings(monkeypatch)

    manifest = pull("llama3.1-8b-instruct", store=open_store(config), settings=config)

    assert manifest.name == "llama3.1-8b-instruct"
    assert manifest.source.uri == f"hf:{entry.gguf_repo}/{entry.gguf_file}"
    assert (manifest.license, manifest.license_sources) == ("llama3.1", {"catalog": "llama3.1"})


def test_a_catalog_model_without_a_gguf_says_where_its_weights_are(hub, monkeypatch):
    config = hub.settings(monkeypatch)
    with pytest.raises(ModelNotFound, match="has nothing owl can run yet") as missing:
        pull("musicgen-small", store=open_store(config), settings=config)
    assert "hf:facebook/musicgen-small" in str(missing.value)
    assert hub.server.requests == []


def test_metadata_and_card_that_disagree_keep_the_stricter_license(
    hub, monkeypatch, hf_cache, caplog
):
    model = write_tiny_gguf(hub.files / "model.gguf", license="apache-2.0")
    hub.add_file("Org/Repo", "model.gguf", model)
    card = hub.files / "README.md"
    card.write_text("---\nlicense: cc-by-nc-4.0\n---\n")
    hub.add_file("Org/Repo", "README.md", card, revision=COMMIT)
    config = hub.settings(monkeypatch)

    manifest = pull("hf:Org/Repo/model.gguf", store=open_store(config), settings=config)

    assert manifest.license_sources == {"gguf": "apache-2.0", "card": "cc-by-nc-4.0"}
    assert manifest.license == "cc-by-nc-4.0"
    assert any("apache-2.0" in r.message and "cc-by-nc-4.0" in r.message for r in caplog.records)
