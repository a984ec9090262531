"""Vision models in the store: a GGUF and its projector (mmproj), pulled as one model from a
file, a URL or the Hub (a loopback server that answers like it), or added to a stored model."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.config import Settings
from owl.engine import Capability, capabilities_of
from owl.errors import InvalidModelName, LockMismatch, ModelFormatError
from owl.licenses.bom import bom_json
from owl.pull import add_projector, pull, pull_vision
from owl.pull.projector import pick_projector
from owl.pull.sources.hf import pick_gguf
from owl.store import Store
from owl.store.lock import Lock, check_locked, locked_model
from owl.store.manifest import PROJECTOR_ROLE
from tests.support.fileserver import FileServer
from tests.support.hub import Hub, assert_nothing_stored, isolate_hf_cache, sha256_hex
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_mmproj import write_tiny_mmproj


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "files" / "tiny.gguf", license="apache-2.0")


@pytest.fixture
def mmproj(tmp_path: Path) -> Path:
    return write_tiny_mmproj(tmp_path / "files" / "mmproj-tiny-f16.gguf")


def test_a_model_pulled_with_its_projector_is_one_model_of_two_files(
    store: Store, settings: Settings, model: Path, mmproj: Path
) -> None:
    pulled = pull_vision(str(model), projector=str(mmproj), store=store, settings=settings)
    manifest = pulled.manifest

    assert [(entry.role, entry.filename) for entry in manifest.files] == [
        ("model", "tiny.gguf"),
        (PROJECTOR_ROLE, "mmproj-tiny-f16.gguf"),
    ]
    projector = manifest.projector
    assert projector is not None and projector.digest == f"sha256:{sha256_hex(mmproj)}"
    assert store.projector_path(manifest).read_bytes() == mmproj.read_bytes()
    assert store.weights_path(manifest).read_bytes() == model.read_bytes()
    # Scanned like any GGUF, and on record in the manifest, the lock and the BOM.
    assert manifest.scans[projector.digest].verdict == "clean"
    assert manifest.scans[projector.digest].format == "gguf"
    assert manifest.projector_source.uri == str(mmproj.resolve())
    assert manifest.source.uri == str(model.resolve())
    assert manifest.license == "apache-2.0"
    assert projector in locked_model(manifest).files
    assert sha256_hex(mmproj) in bom_json([manifest])
    assert store.find(manifest.model_name) == manifest
    assert capabilities_of(manifest, store=store) >= {Capability.CHAT, Capability.SEE}


def test_a_model_without_a_projector_does_not_see(
    store: Store, settings: Settings, model: Path
) -> None:
    manifest = pull(str(model), store=store, settings=settings)
    assert manifest.projector is None and store.projector_path(manifest) is None
    assert Capability.SEE not in capabilities_of(manifest, store=store)


def test_a_gguf_that_is_no_projector_is_refused_and_nothing_is_stored(
    store: Store, settings: Settings, model: Path, tmp_path: Path
) -> None:
    text_model = write_tiny_gguf(tmp_path / "other" / "mmproj-fake.gguf", rows=48)
    with pytest.raises(ModelFormatError, match="is not a vision projector.*'llama'"):
        pull_vision(str(model), projector=str(text_model), store=store, settings=settings)
    assert_nothing_stored(store)


def test_a_file_that_is_no_gguf_is_refused_as_a_projector(
    store: Store, settings: Settings, model: Path, tmp_path: Path
) -> None:
    junk = tmp_path / "mmproj-junk.gguf"
    junk.write_bytes(b"not a gguf at all" * 10)
    with pytest.raises(ModelFormatError, match="mmproj-junk.gguf is not a valid"):
        pull_vision(str(model), projector=str(junk), store=store, settings=settings)
    assert_nothing_stored(store)


def test_another_models_projector_is_refused_by_its_width(
    store: Store, settings: Settings, model: Path, tmp_path: Path
) -> None:
    wide = write_tiny_mmproj(tmp_path / "mmproj-wide.gguf", projection_dim=16)
    with pytest.raises(ModelFormatError, match="16-wide embeddings.*are 8 wide"):
        pull_vision(str(model), projector=str(wide), store=store, settings=settings)
    assert_nothing_stored(store)


def test_a_projector_is_added_to_a_stored_model_which_keeps_the_rest(
    store: Store, settings: Settings, model: Path, mmproj: Path
) -> None:
    before = pull(str(model), store=store, settings=settings, parameters={"temperature": 0.2})
    lock = Lock(models={before.display_name: locked_model(before)})

    after = pull_vision("tiny", projector=str(mmproj), store=store, settings=settings).manifest

    assert after.weights == before.weights and after.projector is not None
    assert (after.source, after.license, after.parameters) == (
        before.source,
        before.license,
        before.parameters,
    )
    assert store.find(before.model_name) == after
    # The lock pinned the model without it: it no longer matches, until pinned again.
    with pytest.raises(LockMismatch, match="mmproj-tiny-f16.gguf: not pinned"):
        check_locked(after, lock)
    check_locked(after, Lock(models={after.display_name: locked_model(after)}))
    # The same projector again changes nothing; a refused one leaves the stored model as it is.
    assert add_projector(after, str(mmproj), store=store, settings=settings) == after


def test_a_refused_projector_leaves_a_stored_model_as_it_was(
    store: Store, settings: Settings, model: Path, tmp_path: Path
) -> None:
    before = pull(str(model), store=store, settings=settings)
    wide = write_tiny_mmproj(tmp_path / "mmproj-wide.gguf", projection_dim=16)
    with pytest.raises(ModelFormatError, match="another model's projector"):
        pull_vision("tiny", projector=str(wide), store=store, settings=settings)
    assert store.list() == [before]
    assert store.blobs.digests() == {before.weights.digest}


def test_a_projector_reference_must_name_a_file(
    store: Store, settings: Settings, model: Path
) -> None:
    pull(str(model), store=store, settings=settings)
    with pytest.raises(InvalidModelName, match="--mmproj takes a projector file"):
        pull_vision("tiny", projector="smollm2", store=store, settings=settings)


def test_a_lost_projector_blob_is_pulled_again_from_its_source(
    store: Store, settings: Settings, model: Path, mmproj: Path
) -> None:
    manifest = pull_vision(str(model), projector=str(mmproj), store=store, settings=settings)
    digest = manifest.manifest.projector.digest
    store.blobs.remove(digest)

    restored = pull_vision("tiny", store=store, settings=settings).manifest

    assert restored.projector == manifest.manifest.projector
    assert store.blobs.path(digest).read_bytes() == mmproj.read_bytes()


def test_a_projector_over_http_resumes_an_interrupted_download(
    store: Store, settings: Settings, model: Path, mmproj: Path
) -> None:
    with FileServer() as server:
        server.add("/mmproj-tiny-f16.gguf", mmproj, etag='"v1"', drop_after=100, drops=1)
        url = server.url("/mmproj-tiny-f16.gguf")
        manifest = pull_vision(str(model), projector=url, store=store, settings=settings).manifest
        gets = server.gets("/mmproj-tiny-f16.gguf")

    assert manifest.projector.filename == "mmproj-tiny-f16.gguf"
    assert store.projector_path(manifest).read_bytes() == mmproj.read_bytes()
    assert manifest.projector_source.uri == url
    assert [get.headers.get("Range") for get in gets] == [None, "bytes=100-"]


# --- the Hub -------------------------------------------------------------------------------


@pytest.fixture
def hub(tmp_path: Path, owl_env: Path, monkeypatch: pytest.MonkeyPatch):
    isolate_hf_cache(monkeypatch)
    with FileServer() as server:
        yield Hub(server, tmp_path / "hub-files")


def _vision_repo(hub: Hub, repo: str, tmp_path: Path) -> dict[str, str]:
    model = write_tiny_gguf(tmp_path / "m.gguf")
    return hub.add_repo(
        repo,
        {
            "Tiny-Q8_0.gguf": model.read_bytes(),
            "mmproj-Tiny-Q8_0.gguf": write_tiny_mmproj(tmp_path / "p8.gguf", rows=2).read_bytes(),
            "mmproj-Tiny-f16.gguf": write_tiny_mmproj(tmp_path / "p16.gguf").read_bytes(),
        },
    )


def test_a_hub_repository_brings_its_f16_projector_and_says_so(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    shas = _vision_repo(hub, "Org/Tiny-GGUF", tmp_path)
    settings = hub.settings(monkeypatch)
    store = Store(settings.home)

    pulled = pull_vision("hf:Org/Tiny-GGUF", store=store, settings=settings)

    manifest = pulled.manifest
    assert manifest.weights.filename == "Tiny-Q8_0.gguf"  # the projectors are not the model
    assert manifest.projector.filename == "mmproj-Tiny-f16.gguf"
    assert manifest.projector.digest == f"sha256:{shas['mmproj-Tiny-f16.gguf']}"
    assert manifest.projector_source.uri == "hf:Org/Tiny-GGUF/mmproj-Tiny-f16.gguf"
    assert pulled.projector_note == (
        "projector mmproj-Tiny-f16.gguf from hf:Org/Tiny-GGUF: the f16 one of 2 "
        "(--no-mmproj skips it)"
    )


def test_no_mmproj_pulls_the_model_alone_and_an_hf_projector_can_be_named(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _vision_repo(hub, "Org/Tiny-GGUF", tmp_path)
    settings = hub.settings(monkeypatch)
    store = Store(settings.home)

    alone = pull_vision("hf:Org/Tiny-GGUF", find_projector=False, store=store, settings=settings)
    assert alone.manifest.projector is None and alone.projector_note is None

    named = pull_vision(
        alone.manifest.display_name,
        projector="hf:Org/Tiny-GGUF/mmproj-Tiny-Q8_0.gguf",
        store=store,
        settings=settings,
    ).manifest
    assert named.projector.filename == "mmproj-Tiny-Q8_0.gguf"
    assert named.projector_source.revision is not None  # the commit, as for any Hub file


def test_a_catalog_vision_model_comes_with_its_mmproj_file(
    hub: Hub, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    repo = "ggml-org/SmolVLM-256M-Instruct-GGUF"
    model = write_tiny_gguf(tmp_path / "m.gguf")
    hub.add_file(repo, "SmolVLM-256M-Instruct-Q8_0.gguf", model)
    hub.add_file(repo, "mmproj-SmolVLM-256M-Instruct-f16.gguf", write_tiny_mmproj(tmp_path / "p"))
    settings = hub.settings(monkeypatch)
    store = Store(settings.home)

    manifest = pull_vision("smolvlm-256m-instruct", store=store, settings=settings).manifest

    assert manifest.display_name == "smolvlm-256m-instruct"
    assert manifest.projector.filename == "mmproj-SmolVLM-256M-Instruct-f16.gguf"
    assert manifest.license == "apache-2.0"  # the catalog's


@pytest.mark.parametrize(
    ("files", "model_file", "picked"),
    [
        ([], "m.gguf", None),
        (
            ["a.gguf", "mmproj-x.gguf"],
            "a.gguf",
            ("mmproj-x.gguf", "the repository's only projector"),
        ),
        (
            ["mmproj-x-Q8_0.gguf", "mmproj-x-f16.gguf", "mmproj-x-F32.gguf"],
            "x-Q8_0.gguf",
            ("mmproj-x-f16.gguf", "the f16 one of 3"),
        ),
        (
            ["mmproj-x-Q4_K_M.gguf", "mmproj-x-Q8_0.gguf"],
            "x-Q8_0.gguf",
            ("mmproj-x-Q8_0.gguf", "the one of the model's quantization (Q8_0), of 2"),
        ),
    ],
)
def test_pick_projector(files: list[str], model_file: str, picked: tuple | None) -> None:
    assert pick_projector(files, model_file) == picked


def test_pick_gguf_never_takes_a_projector_for_the_model() -> None:
    files = ["mmproj-x-Q8_0.gguf", "x-Q8_0.gguf", "mmproj-model-f16.gguf", "README.md"]
    assert pick_gguf("Org/Repo", files) == "x-Q8_0.gguf"


# --- llama.cpp's own converter output -------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path):
    from owl.quantize.converter import ensure_converter
    from tests.support.tiny_lora import smollm2_tokenizer
    from tests.support.tiny_vlm import build_tiny_vlm_folder, convert_tiny_vlm

    work = tmp_path_factory.getbasetemp()
    converter = ensure_converter(work / "owl-tools")
    folder = build_tiny_vlm_folder(work, smollm2_tokenizer(work, bundled_gguf))
    return convert_tiny_vlm(folder, converter, work)


@pytest.mark.slow
def test_a_converted_smolvlm_and_its_mmproj_are_one_vision_model(
    store: Store, settings: Settings, tiny_vlm, bundled_gguf: Path
) -> None:
    from owl.formats import inspect
    from owl.formats.projector import projector_facts

    manifest = pull_vision(
        str(tiny_vlm.model), projector=str(tiny_vlm.projector), store=store, settings=settings
    ).manifest
    facts = projector_facts(inspect(store.projector_path(manifest)).metadata)
    assert (facts.projector_type, facts.image_size, facts.patch_size) == ("idefics3", 64, 8)
    assert facts.projection_dim == inspect(store.weights_path(manifest)).embedding_length
    assert Capability.SEE in capabilities_of(manifest, store=store)
    # SmolLM2 (576 wide) is not the language model this projector was made for.
    with pytest.raises(ModelFormatError, match="64-wide embeddings.*576 wide"):
        pull_vision(
            str(bundled_gguf), projector=str(tiny_vlm.projector), store=store, settings=settings
        )
    assert store.list() == [manifest]
