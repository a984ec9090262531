"""A diffusers folder as a stored model: `owl pull ./folder` keeps the layout's files under
their paths ("unet/config.json"), scans each, and rebuilds the folder as a snapshot of
links; what is not part of the layout is left out, and hostile folders are refused before
anything is stored (custom code, pickles only, links that lead out, broken indexes)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from owl import engine
from owl.config import Settings
from owl.engine.registry import capabilities_of
from owl.errors import ModelFormatError, StoreCorrupted, UnsafeModel, WrongModelKind
from owl.pull import pull
from owl.store import Store
from owl.store.manifest import FileEntry, Manifest, Source
from owl.store.ref import RefKind
from owl.store.snapshots import materialise
from tests.support.tiny_diffusion import edit_index

LAYOUT = {
    "model_index.json": "config",
    "scheduler/scheduler_config.json": "config",
    "text_encoder/config.json": "config",
    "text_encoder/model.safetensors": "model",
    "tokenizer/tokenizer.json": "tokenizer",
    "tokenizer/tokenizer_config.json": "tokenizer",
    "unet/config.json": "config",
    "unet/diffusion_pytorch_model.safetensors": "model",
    "vae/config.json": "config",
    "vae/diffusion_pytorch_model.safetensors": "model",
}


@pytest.fixture
def folder(tiny_sd: Path, tmp_path: Path) -> Path:
    """A copy of the tiny SD folder to change."""
    return Path(shutil.copytree(tiny_sd, tmp_path / "tiny-sd"))


def _pull(folder: Path, store: Store, settings: Settings) -> Manifest:
    return pull(str(folder), store=store, settings=settings)


def _nothing_stored(store: Store) -> None:
    assert not [m for m in store.list() if m.format == "diffusers"]
    assert not any((store.home / "blobs").glob("sha256-*"))


def test_pull_keeps_the_layout_with_roles_scans_and_a_snapshot(
    folder: Path, store: Store, settings: Settings
) -> None:
    manifest = _pull(folder, store, settings)
    assert manifest.format == "diffusers" and manifest.is_folder
    assert {entry.filename: entry.role for entry in manifest.files} == LAYOUT
    verdicts = {entry.filename: manifest.scans[entry.digest].verdict for entry in manifest.files}
    assert set(verdicts.values()) <= {"clean", "unsupported"}  # configs: nothing to scan
    assert all(verdicts[name] == "clean" for name, role in LAYOUT.items() if role == "model")
    assert manifest.info["architecture"] == "stable-diffusion"
    info = store.read_info(manifest)
    assert info.metadata["diffusers.pipeline"] == "StableDiffusionPipeline"
    assert info.metadata["diffusers.default_size"] == 32
    assert capabilities_of(manifest, store=store) == frozenset({engine.Capability.DRAW})
    snapshot = store.model_dir(manifest)
    for name in LAYOUT:
        assert (snapshot / name).read_bytes() == (folder / name).read_bytes()
        if "/" in name:
            assert not (snapshot / name.split("/")[0]).is_symlink()  # real sub-folders
    assert store.model_dir(manifest) == snapshot  # complete: not rebuilt
    store.remove(manifest.model_name)
    assert not snapshot.exists()


def test_files_outside_the_layout_are_left_out(
    folder: Path, store: Store, settings: Settings
) -> None:
    unet = folder / "unet"
    (folder / "v1-5-pruned.safetensors").write_bytes(b"a single-file checkpoint")
    (unet / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"weights": 1}))
    (unet / "diffusion_flax_model.msgpack").write_bytes(b"\x80")
    (unet / "attention.py").write_text("import os\n")
    (unet / ".hidden.json").write_text("{}")
    (unet / "extra").mkdir()
    (unet / "extra" / "config.json").write_text("{}")
    (folder / "unused").mkdir()  # a folder the index does not name
    (folder / "unused" / "model.safetensors").write_bytes(b"x")
    manifest = _pull(folder, store, settings)
    assert {entry.filename for entry in manifest.files} == set(LAYOUT)


def test_a_component_with_pickled_weights_only_is_refused(
    folder: Path, store: Store, settings: Settings
) -> None:
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    weights.unlink()
    (folder / "vae" / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps({"w": 1}))
    with pytest.raises(ModelFormatError, match="vae has only pickle-based weights"):
        _pull(folder, store, settings)
    _nothing_stored(store)


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"_class_name": ["my_pipeline", "MyPipeline"]}, UnsafeModel, "custom pipeline"),
        ({"_class_name": "FluxPipeline"}, ModelFormatError, "'FluxPipeline' pipeline"),
        ({"unet": ["my_module", "UNet2DConditionModel"]}, UnsafeModel, "'my_module'"),
        ({"unet": ["diffusers", "FancyUNet"]}, ModelFormatError, "FancyUNet"),
        ({"unet": None}, ModelFormatError, "has no unet"),
        ({"../../etc": ["diffusers", "AutoencoderKL"]}, ModelFormatError, "plain sub-folder"),
        ({"unet": ["diffusers"]}, ModelFormatError, r"\[library, class\]"),
        ({"vae": ["diffusers", None]}, ModelFormatError, r"\[library, class\]"),
        ({"safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"]},
         ModelFormatError, "no safety_checker/ folder"),
    ],
)  # fmt: skip
def test_a_hostile_or_broken_index_is_refused(
    folder: Path, store: Store, settings: Settings, changes: dict, error: type, words: str
) -> None:
    edit_index(folder, **changes)
    with pytest.raises(error, match=words):
        _pull(folder, store, settings)
    _nothing_stored(store)


def test_an_index_that_is_not_json_or_too_large_is_refused(
    folder: Path, store: Store, settings: Settings
) -> None:
    index = folder / "model_index.json"
    index.write_text("{not json")
    with pytest.raises(ModelFormatError, match="not valid JSON"):
        _pull(folder, store, settings)
    index.write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "x": "y" * (1 << 20)}))
    with pytest.raises(ModelFormatError, match="larger than"):
        _pull(folder, store, settings)
    _nothing_stored(store)


def test_remote_code_in_a_component_is_refused(
    folder: Path, store: Store, settings: Settings
) -> None:
    config_path = folder / "text_encoder" / "config.json"
    config = json.loads(config_path.read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    config_path.write_text(json.dumps(config))
    with pytest.raises(UnsafeModel, match="auto_map"):
        _pull(folder, store, settings)
    _nothing_stored(store)


def test_links_out_of_the_folder_are_refused(
    folder: Path, tmp_path: Path, store: Store, settings: Settings
) -> None:
    secret = tmp_path / "secret.json"
    secret.write_text('{"token": "do not store me"}')
    tokenizer_config = folder / "tokenizer" / "tokenizer_config.json"
    tokenizer_config.unlink()
    tokenizer_config.symlink_to(secret)
    with pytest.raises(ModelFormatError, match="link to a file outside"):
        _pull(folder, store, settings)
    tokenizer_config.unlink()
    shutil.copy(secret, tokenizer_config)
    outside = shutil.move(folder / "vae", tmp_path / "elsewhere-vae")
    (folder / "vae").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ModelFormatError, match="vae/ links out of the folder"):
        _pull(folder, store, settings)
    _nothing_stored(store)


def test_a_hugging_face_cache_snapshot_pulls_through_its_links(
    tiny_sd: Path, tmp_path: Path, store: Store, settings: Settings
) -> None:
    """The HF cache links every file of models--org--name/snapshots/REV to ../../blobs."""
    repo = tmp_path / "hub" / "models--tiny--sd"
    snapshot = repo / "snapshots" / ("0" * 40)
    blobs = repo / "blobs"
    blobs.mkdir(parents=True)
    for name in LAYOUT:
        blob = blobs / name.replace("/", "-")
        shutil.copy(tiny_sd / name, blob)
        (snapshot / name).parent.mkdir(parents=True, exist_ok=True)
        (snapshot / name).symlink_to(os.path.relpath(blob, (snapshot / name).parent))
    manifest = _pull(snapshot, store, settings)
    assert {entry.filename for entry in manifest.files} == set(LAYOUT)


def test_a_missing_shard_is_refused(folder: Path, store: Store, settings: Settings) -> None:
    index = {"weight_map": {"a": "diffusion_pytorch_model-00002-of-00002.safetensors"}}
    (folder / "unet" / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps(index)
    )
    with pytest.raises(ModelFormatError, match="incomplete"):
        _pull(folder, store, settings)


def test_half_precision_variants_are_found(folder: Path, store: Store, settings: Settings) -> None:
    for part, name in (
        ("unet", "diffusion_pytorch_model"),
        ("vae", "diffusion_pytorch_model"),
        ("text_encoder", "model"),
    ):
        weights = folder / part / f"{name}.safetensors"
        weights.rename(weights.with_name(f"{name}.fp16.safetensors"))
    manifest = _pull(folder, store, settings)
    assert store.read_info(manifest).metadata["diffusers.variant"] == "fp16"
    store.remove(manifest.model_name)
    one = folder / "vae" / "diffusion_pytorch_model.fp16.safetensors"
    one.rename(one.with_name("diffusion_pytorch_model.safetensors"))  # plain here, fp16 there
    with pytest.raises(ModelFormatError, match="different variants"):
        _pull(folder, store, settings)


def test_a_drawing_model_refuses_chat_and_a_text_model_refuses_drawing(
    folder: Path, store: Store, settings: Settings
) -> None:
    manifest = _pull(folder, store, settings)
    with pytest.raises(WrongModelKind, match="owl draw"):
        engine.load(manifest, store=store, settings=settings, capability=engine.Capability.CHAT)
    text = pull("smollm2", store=store, settings=settings)
    with pytest.raises(WrongModelKind, match="not an image generation"):
        engine.load(text, store=store, settings=settings, capability=engine.Capability.DRAW)


def _manifest(*names: str) -> Manifest:
    digest = "sha256:" + "0" * 64
    return Manifest(
        name="nested",
        format="diffusers",
        files=[FileEntry(filename=name, digest=digest, size=1) for name in names],
        source=Source(kind=RefKind.FILE, uri="/nowhere"),
    )


@pytest.mark.parametrize(
    "names",
    [
        ("unet/../../escape",),
        ("/etc/passwd",),
        ("a/b/c.json",),
        ("unet//config.json",),
        ("unet/config.json", "Unet/config.json"),  # one file where case does not count
        ("unet", "unet/config.json"),  # a file where a folder must be
    ],
)
def test_a_manifest_whose_names_cannot_be_a_folder_is_refused(
    names: tuple[str, ...], tmp_path: Path
) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    with pytest.raises(StoreCorrupted, match="cannot be a folder"):
        materialise(tmp_path / "home", _manifest(*names), dict.fromkeys(names, blob))
    assert not (tmp_path / "home").exists()  # refused before anything was made


def test_a_stale_nested_snapshot_is_rebuilt(tmp_path: Path) -> None:
    home = tmp_path / "home"
    blob = tmp_path / "blob"
    blob.write_bytes(b"x")
    manifest = _manifest("model_index.json", "unet/config.json")
    blobs = dict.fromkeys(["model_index.json", "unet/config.json"], blob)
    snapshot = materialise(home, manifest, blobs)
    (snapshot / "unet" / "config.json").unlink()
    assert materialise(home, manifest, blobs) == snapshot
    assert (snapshot / "unet" / "config.json").read_bytes() == b"x"
    (snapshot / "unet" / "stray.json").write_text("{}")
    materialise(home, manifest, blobs)
    assert not (snapshot / "unet" / "stray.json").exists()
