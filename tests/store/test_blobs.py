"""Blobs: hashed while written, renamed into place only when whole and matching."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from owl.errors import DigestMismatch, InvalidModelName, StoreCorrupted
from owl.store.blobs import BlobStore, HashingWriter


def test_import_file_stores_bytes_under_their_digest(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    src = tmp_path / "x.bin"
    src.write_bytes(b"hello owl" * 1000)
    seen: list[tuple[int, int | None]] = []
    digest = blobs.import_file(src, progress=lambda done, total: seen.append((done, total)))
    assert digest == "sha256:" + hashlib.sha256(src.read_bytes()).hexdigest()
    assert blobs.path(digest).read_bytes() == src.read_bytes()
    assert seen[-1] == (9000, 9000)
    assert blobs.digests() == {digest}
    assert not list(blobs.root.glob("partial-*"))


def test_mismatch_discards_the_temp_file(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    src = tmp_path / "x.bin"
    src.write_bytes(b"abc")
    with pytest.raises(DigestMismatch, match="expected sha256:0000"):
        blobs.import_file(src, expected="sha256:" + "0" * 64)
    assert blobs.digests() == set()
    assert not list(blobs.root.glob("partial-*"))


def test_writer_resumes_by_hashing_what_is_there(tmp_path: Path) -> None:
    path = tmp_path / "partial"
    first = HashingWriter(path)
    first.write(b"hello ")
    first.close()
    second = HashingWriter(path)
    assert second.size == 6
    second.write(b"world")
    second.close()
    assert second.digest == "sha256:" + hashlib.sha256(b"hello world").hexdigest()


def test_paths_come_only_from_valid_digests(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    with pytest.raises(InvalidModelName):
        blobs.path("sha256:../../etc/passwd")
    with pytest.raises(StoreCorrupted, match="pull the model again"):
        blobs.require("sha256:" + "1" * 64)
