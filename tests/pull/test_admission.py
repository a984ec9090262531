"""owl.pull.admission: the one tail of every pull, on bytes already in the blob store."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.errors import ModelFormatError
from owl.formats import inspect
from owl.pull.admission import Licensing, admit
from owl.store import FileEntry, Source, Store, parse_name
from owl.store.blobs import sha256_file
from owl.store.ref import RefKind
from tests.support.tiny_gguf import write_tiny_gguf

CARD = "---\nlicense: cc-by-nc-4.0\n---\n# a card\n"


def _stored(store: Store, path: Path) -> FileEntry:
    digest = store.blobs.import_file(path)
    return FileEntry(filename=path.name, digest=digest, size=path.stat().st_size)


def test_a_file_the_scan_cannot_verify_is_refused_and_its_blob_removed(
    store: Store, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    entry = _stored(store, broken)
    with pytest.raises(ModelFormatError, match="broken.gguf is not a valid GGUF file"):
        admit(
            [entry],
            store=store,
            target=parse_name("broken"),
            source=Source(kind=RefKind.FILE, uri=str(broken)),
            added=[entry.digest],
            read=lambda stored: inspect(stored[entry.filename]),
            licensing=Licensing(),
        )
    assert store.blobs.digests() == set() and store.list() == []


def test_the_license_comes_from_metadata_card_and_what_the_pull_was_told(
    store: Store, tmp_path: Path
) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf", license="apache-2.0")
    entry = _stored(store, model)
    manifest = admit(
        [entry],
        store=store,
        target=parse_name("tiny"),
        source=Source(kind=RefKind.FILE, uri=str(model)),
        added=[entry.digest],
        read=lambda stored: inspect(stored[entry.filename]),
        licensing=Licensing.given({"catalog": "mit"}, user=None),
        card=CARD,
    )
    assert manifest.license_sources == {
        "gguf": "apache-2.0",
        "card": "cc-by-nc-4.0",
        "catalog": "mit",
    }
    assert manifest.license == "cc-by-nc-4.0"  # the stricter
    assert manifest.scans[entry.digest].verdict == "clean"
    assert store.find(parse_name("tiny")) == manifest
    assert sha256_file(store.blobs.path(entry.digest)) == entry.digest


def test_the_user_license_is_kept_from_the_sources_a_pull_again_brings() -> None:
    assert Licensing.given({"user": "mit", "alias": "apache-2.0"}) == Licensing(
        alias="apache-2.0", user="mit"
    )
    assert Licensing.given(None, user="qwen") == Licensing(user="qwen")
