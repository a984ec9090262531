"""Hugging Face model folders as stored models: pull, files and roles, scans, snapshots, show,
verify, rm; and the refusals (remote code, pickle-only weights, an index that points away).

The folders are tiny random-weight transformers models (tests/support/tiny_models.py) with
SmolLM2's tokenizer, saved by transformers itself.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
from pathlib import Path

import pytest

from owl import engine
from owl.config import Settings
from owl.errors import (
    EngineError,
    LockMismatch,
    ModelFormatError,
    NameClash,
    StoreCorrupted,
    UnsafeModel,
)
from owl.pull import pull, resolve
from owl.scan.policy import require_loadable, verdict_of
from owl.store import Store, parse_name
from owl.store.blobs import sha256_file
from owl.store.snapshots import snapshot_path
from owl.store.verify import verify
from tests.quantize.test_convert import smollm2_hf_folder
from tests.support.cli import owl
from tests.support.tiny_models import build_tiny_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tokenizer_folder(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    return smollm2_hf_folder(tmp_path_factory.getbasetemp(), bundled_gguf)


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, tokenizer_folder: Path) -> Path:
    """Shared and read-only: tests that change a folder copy it first."""
    return build_tiny_folder("llama", tmp_path_factory.getbasetemp(), tokenizer_folder)


@pytest.fixture(scope="session")
def tiny_opt(tmp_path_factory: pytest.TempPathFactory, tokenizer_folder: Path) -> Path:
    return build_tiny_folder("opt", tmp_path_factory.getbasetemp(), tokenizer_folder)


def copy_of(folder: Path, dest: Path) -> Path:
    return Path(shutil.copytree(folder, dest / folder.name))


def sharded_copy(folder: Path, dest: Path) -> Path:
    """`folder` with its weights split into two shards and an index, as the Hub has them."""
    from safetensors.numpy import load_file, save_file

    out = copy_of(folder, dest)
    tensors = load_file(str(out / "model.safetensors"))
    (out / "model.safetensors").unlink()
    names = sorted(tensors)
    shards = {
        "model-00001-of-00002.safetensors": names[: len(names) // 2],
        "model-00002-of-00002.safetensors": names[len(names) // 2 :],
    }
    weight_map = {}
    for shard, keys in shards.items():
        save_file({key: tensors[key] for key in keys}, str(out / shard), metadata={"format": "pt"})
        weight_map |= dict.fromkeys(keys, shard)
    index = {"metadata": {}, "weight_map": weight_map}
    (out / "model.safetensors.index.json").write_text(json.dumps(index))
    return out


def element_count(folder: Path) -> int:
    """Every tensor's element count, by the safetensors library's own reader."""
    from safetensors import safe_open

    total = 0
    for path in folder.glob("*.safetensors"):
        with safe_open(str(path), framework="numpy") as handle:
            total += sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())  # noqa: SIM118
    return total


def stored_blobs(store: Store) -> set[str]:
    return store.blobs.digests()


# --- pull -------------------------------------------------------------------------------------


def test_pull_stores_every_file_once_with_its_role_and_verdict(
    store: Store, settings: Settings, tiny_llama: Path
) -> None:
    manifest = pull(str(tiny_llama), store=store, settings=settings)
    assert manifest.display_name == "tiny-llama"
    assert manifest.format == "safetensors" and manifest.is_folder
    files = sorted(path.name for path in tiny_llama.iterdir())
    assert [entry.filename for entry in manifest.files] == files
    roles = {entry.filename: entry.role for entry in manifest.files}
    assert roles["model.safetensors"] == "model"
    assert roles["config.json"] == roles["generation_config.json"] == "config"
    assert roles["tokenizer.json"] == roles["tokenizer_config.json"] == "tokenizer"
    assert roles["README.md"] == "card"
    assert manifest.weights.filename == "model.safetensors"
    for entry in manifest.files:
        assert sha256_file(store.blobs.path(entry.digest)) == entry.digest
        assert entry.size == (tiny_llama / entry.filename).stat().st_size
    assert manifest.size == sum(path.stat().st_size for path in tiny_llama.iterdir())
    verdicts = {entry.filename: manifest.scans[entry.digest] for entry in manifest.files}
    assert verdicts["model.safetensors"].verdict == "clean"
    assert verdicts["model.safetensors"].format == "safetensors"
    assert verdicts["tokenizer_config.json"].format == "tokenizer-config"
    assert verdicts["README.md"].verdict == "unsupported"  # nothing to check in a card
    assert verdict_of(manifest) == "clean"
    assert manifest.license == "apache-2.0" and manifest.license_sources == {"card": "apache-2.0"}
    assert manifest.info["parameters"] == element_count(tiny_llama)
    assert manifest.info["architecture"] == "llama"
    assert manifest.info["context_length"] == 256
    assert manifest.source.uri == str(tiny_llama.resolve())


def test_pulling_again_is_idempotent_and_a_changed_folder_clashes(
    store: Store, settings: Settings, tiny_llama: Path, tmp_path: Path
) -> None:
    folder = copy_of(tiny_llama, tmp_path)
    first = pull(str(folder), store=store, settings=settings)
    blobs = stored_blobs(store)
    assert pull(str(folder) + "/", store=store, settings=settings) == first
    assert resolve(str(folder), store=store, settings=settings) == first
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rope_theta": 1.0}))
    with pytest.raises(NameClash, match="changed"):
        pull(str(folder), store=store, settings=settings)
    assert stored_blobs(store) == blobs  # the changed config was not kept
    # Another name takes it, and the unchanged files are not stored twice.
    other = pull(str(folder), store=store, settings=settings, name="tiny-llama-2")
    assert len(stored_blobs(store) - blobs) == 1
    assert other.weights.digest == first.weights.digest


def test_a_lost_blob_is_restored_by_pulling_the_name(
    store: Store, settings: Settings, tiny_llama: Path, tmp_path: Path
) -> None:
    folder = sharded_copy(tiny_llama, tmp_path)
    manifest = pull(str(folder), store=store, settings=settings, name="sharded")
    shards = manifest.weight_files
    assert [entry.filename for entry in shards] == [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ]
    assert manifest.info["parameters"] == element_count(tiny_llama)
    # Damage the second shard: verify finds it and moves it aside…
    blob = store.blobs.path(shards[1].digest)
    os.chmod(blob, 0o644)
    with blob.open("r+b") as handle:
        handle.seek(-4, 2)
        handle.write(b"\xff\xff\xff\xff")
    checks = {check.filename: check for check in verify([manifest], store=store)}
    assert checks["model-00002-of-00002.safetensors"].status == "corrupt"
    assert checks["model-00001-of-00002.safetensors"].status == "ok"
    assert {check.status for check in checks.values()} == {"ok", "corrupt"}
    # …so the model cannot load half-broken, and `owl pull NAME` restores it from the folder.
    with pytest.raises(StoreCorrupted, match="missing"):
        store.model_dir(manifest)
    restored = pull("sharded", store=store, settings=settings)
    assert restored.files == manifest.files
    assert all(check.status == "ok" for check in verify([restored], store=store))


def test_a_truncated_blob_and_a_scan_of_a_missing_one_are_restored_by_pulling(
    store: Store, settings: Settings, tiny_llama: Path, tmp_path: Path
) -> None:
    from owl.scan.policy import scan_manifest

    folder = copy_of(tiny_llama, tmp_path)
    manifest = pull(str(folder), store=store, settings=settings, name="cut")
    blob = store.blobs.path(manifest.weights.digest)
    os.chmod(blob, 0o644)
    os.truncate(blob, manifest.weights.size // 2)
    restored = pull("cut", store=store, settings=settings)
    assert blob.stat().st_size == manifest.weights.size
    assert all(check.status == "ok" for check in verify([restored], store=store))

    # `owl scan` while the blob is gone records "unverified"; the pull that restores it
    # scans it again, so that `owl run` accepts it.
    store.blobs.remove(manifest.weights.digest)
    _, scanned = scan_manifest(restored, store=store)
    assert verdict_of(scanned) == "unverified"
    again = pull("cut", store=store, settings=settings)
    assert verdict_of(again) == "clean" and store.find(again.model_name) == again
    require_loadable(again, store=store)


def test_model_dir_links_the_blobs_under_their_names(
    store: Store, settings: Settings, tiny_llama: Path
) -> None:
    manifest = pull(str(tiny_llama), store=store, settings=settings)
    folder = store.model_dir(manifest)
    assert folder == snapshot_path(store.home, manifest)
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        entry.filename for entry in manifest.files
    )
    for entry in manifest.files:
        assert os.path.samefile(folder / entry.filename, store.blobs.path(entry.digest))
        assert (folder / entry.filename).read_bytes() == (tiny_llama / entry.filename).read_bytes()
    # A damaged snapshot (a link removed, a stray file) is rebuilt on the next use.
    (folder / "config.json").unlink()
    (folder / "stray.txt").write_text("x")
    again = store.model_dir(manifest)
    assert again == folder
    assert sorted(path.name for path in again.iterdir()) == sorted(
        entry.filename for entry in manifest.files
    )
    assert not list(folder.parent.glob(".tmp-*")) and not list(folder.parent.glob(".stale-*"))


def test_a_manifest_with_a_path_for_a_file_name_never_becomes_a_folder(
    store: Store, settings: Settings, tiny_llama: Path
) -> None:
    manifest = pull(str(tiny_llama), store=store, settings=settings)
    files = [entry.model_copy(update={"filename": "../../escape"}) for entry in manifest.files[:1]]
    tampered = manifest.model_copy(update={"files": files + manifest.files[1:]})
    with pytest.raises(StoreCorrupted, match="cannot be a folder"):
        store.model_dir(tampered)
    assert not (store.home / "escape").exists()


def test_rm_frees_every_blob_and_the_snapshot_once_no_model_uses_them(
    store: Store, settings: Settings, tiny_llama: Path
) -> None:
    before = stored_blobs(store)
    first = pull(str(tiny_llama), store=store, settings=settings)
    second = pull(str(tiny_llama), store=store, settings=settings, name="twin")
    snapshot = store.model_dir(first)
    assert store.model_dir(second) == snapshot  # the same files share one snapshot
    store.remove(parse_name("tiny-llama"))
    assert stored_blobs(store) - before == {entry.digest for entry in second.files}
    assert snapshot.is_dir()
    store.remove(parse_name("twin"))
    assert stored_blobs(store) == before
    assert not snapshot.exists()


# --- what the pull refuses or marks ------------------------------------------------------------


class _Payload:
    def __reduce__(self):  # noqa: ANN204
        return (os.system, ("echo pwned",))


def test_an_unsafe_file_is_stored_with_its_verdict_and_blocks_loading(
    store: Store, settings: Settings, tiny_llama: Path, tmp_path: Path
) -> None:
    folder = copy_of(tiny_llama, tmp_path)
    (folder / "training_args.bin").write_bytes(pickle.dumps(_Payload()))
    manifest = pull(str(folder), store=store, settings=settings)
    entry = next(entry for entry in manifest.files if entry.filename == "training_args.bin")
    assert entry.role == "other"
    assert manifest.scans[entry.digest].verdict == "unsafe"
    assert verdict_of(manifest) == "unsafe"
    with pytest.raises(UnsafeModel, match="training_args.bin"):
        require_loadable(manifest, store=store)
    with pytest.raises(UnsafeModel):
        engine.load(manifest, store=store, settings=settings)


def test_an_unverifiable_file_stores_nothing(
    store: Store, settings: Settings, tiny_llama: Path, tmp_path: Path
) -> None:
    folder = sharded_copy(tiny_llama, tmp_path)
    shard = folder / "model-00002-of-00002.safetensors"
    shard.write_bytes(shard.read_bytes()[:-16])  # truncated: the header promises more
    before = stored_blobs(store)
    with pytest.raises(ModelFormatError, match="model-00002-of-00002.safetensors"):
        pull(str(folder), store=store, settings=settings)
    assert store.find(parse_name(folder.name)) is None
    assert stored_blobs(store) == before


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json"])
def test_a_folder_with_remote_code_is_refused_before_anything_is_copied(
    store: Store, settings: Settings, tiny_llama: Path, tmp_path: Path, name: str
) -> None:
    folder = copy_of(tiny_llama, tmp_path)
    data = json.loads((folder / name).read_text())
    (folder / name).write_text(json.dumps({**data, "auto_map": {"AutoModel": "m.M"}}))
    (folder / "m.py").write_text("import os\n")
    before = stored_blobs(store)
    with pytest.raises(UnsafeModel, match="auto_map"):
        pull(str(folder), store=store, settings=settings)
    assert stored_blobs(store) == before
    assert store.find(parse_name(folder.name)) is None


def test_pickle_only_weights_are_refused_with_what_to_do(
    store: Store, settings: Settings, tmp_path: Path, tiny_llama: Path
) -> None:
    folder = tmp_path / "old-model"
    folder.mkdir()
    shutil.copy(tiny_llama / "config.json", folder)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"w": [1.0]}))
    with pytest.raises(ModelFormatError, match="convert them to safetensors"):
        pull(str(folder), store=store, settings=settings)
    assert store.find(parse_name("old-model")) is None


def test_an_index_that_points_outside_the_folder_is_refused(
    store: Store, settings: Settings, tiny_llama: Path, tmp_path: Path
) -> None:
    folder = sharded_copy(tiny_llama, tmp_path / "in")
    secret = tmp_path / "secret.safetensors"
    shutil.copy(folder / "model-00002-of-00002.safetensors", secret)
    index_path = folder / "model.safetensors.index.json"
    index = json.loads(index_path.read_text())
    index["weight_map"] = {key: "../../secret.safetensors" for key in index["weight_map"]}
    index_path.write_text(json.dumps(index))
    before = stored_blobs(store)
    with pytest.raises(ModelFormatError, match="never a path elsewhere"):
        pull(str(folder), store=store, settings=settings)
    assert stored_blobs(store) == before
    assert sha256_file(secret) not in stored_blobs(store)


def test_odd_file_names_are_left_out(
    store: Store, settings: Settings, tiny_llama: Path, tmp_path: Path
) -> None:
    folder = copy_of(tiny_llama, tmp_path)
    (folder / "notes (copy).txt").write_text("x")
    (folder / ".gitattributes").write_text("*.safetensors filter=lfs")
    (folder / "original").mkdir()
    (folder / "original" / "consolidated.pth").write_bytes(b"x")
    manifest = pull(str(folder), store=store, settings=settings)
    names = {entry.filename for entry in manifest.files}
    assert names == {path.name for path in tiny_llama.iterdir()}


def test_a_lone_safetensors_file_and_a_lock_pin_are_refused(
    store: Store, settings: Settings, tiny_llama: Path
) -> None:
    with pytest.raises(ModelFormatError, match="Pull the model folder"):
        pull(str(tiny_llama / "model.safetensors"), store=store, settings=settings)
    digest = "sha256:" + "0" * 64
    with pytest.raises(LockMismatch, match="model folder"):
        pull(str(tiny_llama), store=store, settings=settings, expect_digest=digest)


def test_without_transformers_the_error_names_the_extra(
    store: Store, settings: Settings, tiny_llama: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    manifest = pull(str(tiny_llama), store=store, settings=settings)
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if it were not installed
    with pytest.raises(EngineError, match=r"pip install 'owl\[convert\]'"):
        engine.load(manifest, store=store, settings=settings)


# --- the CLI ----------------------------------------------------------------------------------


def test_cli_pull_show_list_verify_rm(owl_env: Path, tiny_llama: Path, tmp_path: Path) -> None:
    folder = sharded_copy(tiny_llama, tmp_path)
    unpulled = owl(owl_env, "show", str(folder), "--json")
    assert unpulled.returncode == 0, unpulled.stderr
    details = json.loads(unpulled.stdout)
    assert details["parameters"] == element_count(tiny_llama)
    assert details["architecture"] == "llama" and details["format"] == "safetensors"

    pulled = owl(owl_env, "pull", str(folder), "--name", "tl")
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled tl" in pulled.stdout
    assert "warning" not in pulled.stderr

    shown = owl(owl_env, "show", "tl")
    assert shown.returncode == 0, shown.stderr
    assert "llama (LlamaForCausalLM)" in shown.stdout
    assert f"({element_count(tiny_llama):,})" in shown.stdout
    assert "model-00002-of-00002.safetensors (model" in shown.stdout
    as_json = json.loads(owl(owl_env, "show", "tl", "--json").stdout)
    assert as_json["scan"] == "clean" and as_json["license"] == "apache-2.0"
    assert as_json["context_length"] == 256 and "<|im_start|>" in as_json["chat_template"]
    assert len(as_json["files"]) == len(list(folder.iterdir()))
    template = owl(owl_env, "show", "tl", "--template")
    assert template.stdout.strip() == (folder / "chat_template.jinja").read_text().strip()

    listed = json.loads(owl(owl_env, "list", "--json").stdout)
    mine = next(entry for entry in listed if entry["name"] == "tl")
    assert sum(entry["size"] for entry in mine["files"]) == sum(
        path.stat().st_size for path in folder.iterdir()
    )

    checked = owl(owl_env, "verify", "tl")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    removed = owl(owl_env, "rm", "tl")
    assert removed.returncode == 0, removed.stderr
    home_blobs = {path.name for path in (owl_env / "blobs").glob("sha256-*")}
    digests = {entry["digest"].replace(":", "-") for entry in mine["files"]}
    assert not home_blobs & digests


def test_owl_run_answers_from_an_opt_folder(owl_env: Path, tiny_opt: Path) -> None:
    pulled = owl(owl_env, "pull", str(tiny_opt))
    assert pulled.returncode == 0, pulled.stderr
    ran = owl(
        owl_env,
        "run",
        "tiny-opt",
        "hello",
        "--max-tokens",
        "4",
        timeout=300,
    )
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip()  # random weights: some text, but text
