"""owl verify: stored bytes re-hashed against their manifests; bad ones moved aside."""

from __future__ import annotations

from pathlib import Path

from owl.config import Settings
from owl.pull import pull
from owl.store import Store
from owl.store.blobs import sha256_file
from owl.store.verify import verify
from tests.support.cli import owl
from tests.support.tiny_gguf import write_tiny_gguf


def _damage(path: Path) -> bytes:
    original = path.read_bytes()
    path.chmod(0o644)
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))
    return path.read_bytes()


def test_verify_reports_ok_corrupt_and_missing(
    store: Store, settings: Settings, tmp_path: Path
) -> None:
    good = pull(str(write_tiny_gguf(tmp_path / "good.gguf")), store=store, settings=settings)
    bad = pull(str(write_tiny_gguf(tmp_path / "bad.gguf", rows=16)), store=store, settings=settings)
    gone = pull(
        str(write_tiny_gguf(tmp_path / "gone.gguf", rows=8)), store=store, settings=settings
    )
    damaged = _damage(store.blobs.path(bad.weights.digest))
    store.blobs.remove(gone.weights.digest)

    checks = {check.model: check for check in verify(store.list(), store=store)}
    assert checks[good.display_name].status == "ok"
    assert checks[gone.display_name].status == "missing"
    corrupt = checks[bad.display_name]
    assert corrupt.status == "corrupt" and corrupt.actual not in (None, bad.weights.digest)
    # Moved aside, not deleted: the bytes are kept for a person to look at.
    assert corrupt.quarantined and Path(corrupt.quarantined).read_bytes() == damaged
    assert not store.blobs.has(bad.weights.digest)


def test_owl_verify_then_pull_restores_a_damaged_model(owl_env: Path, tmp_path: Path) -> None:
    source = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert owl(owl_env, "pull", str(source)).returncode == 0
    assert owl(owl_env, "verify", "tiny").returncode == 0
    blob = owl_env / "blobs" / sha256_file(source).replace(":", "-")
    _damage(blob)

    checked = owl(owl_env, "verify")
    assert checked.returncode == 1
    assert "corrupt" in checked.stdout and "owl pull tiny" in checked.stdout
    assert owl(owl_env, "pull", "tiny").returncode == 0  # fetched again from its source
    assert owl(owl_env, "verify", "tiny", "--json").returncode == 0
