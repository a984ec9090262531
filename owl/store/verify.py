"""Integrity: re-hash stored blobs against the digests their manifests name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from owl.errors import InvalidModelName, StoreCorrupted
from owl.store.blobs import sha256_file
from owl.store.manifest import Manifest
from owl.store.ref import parse_name
from owl.store.store import Store

Status = Literal["ok", "missing", "corrupt", "unreadable"]


@dataclass(frozen=True)
class FileCheck:
    model: str
    filename: str
    digest: str
    status: Status
    actual: str | None = None  # the digest the bytes on disk have, when corrupt
    quarantined: str | None = None  # where the corrupt bytes were moved
    error: str | None = None  # why a manifest is unreadable, and what to do


def verify_store(store: Store) -> list[FileCheck]:
    """Check every model in the store, and say which manifests cannot be read at all.

    Store.list() skips an unreadable manifest so that one damaged file hides no other
    model; a check of the store's integrity must report it instead.
    """
    manifests: list[Manifest] = []
    unreadable: list[FileCheck] = []
    for path in sorted(store.manifest_dir.glob("*/*.json")):
        shown = f"{path.parent.name}:{path.stem}"
        try:
            manifest = store.find(parse_name(shown))
        except (StoreCorrupted, InvalidModelName) as err:
            unreadable.append(
                FileCheck(
                    model=shown,
                    filename=path.name,
                    digest="",
                    status="unreadable",
                    error=_unreadable(err, path),
                )
            )
            continue
        if manifest is not None:
            manifests.append(manifest)
    manifests.sort(key=lambda manifest: manifest.display_name)
    return [*unreadable, *verify(manifests, store=store)]


def _unreadable(err: Exception, path: Path) -> str:
    if isinstance(err, StoreCorrupted):
        return str(err)
    return f"manifest {path} is not named like a model; move it out of the store"


def verify(manifests: list[Manifest], *, store: Store) -> list[FileCheck]:
    """Hash every file the manifests name; move bytes that do not match aside.

    A corrupt blob is moved to OWL_HOME/quarantine/ rather than deleted (nothing is lost),
    so that `owl pull NAME` sees it missing and fetches it again.
    """
    checks: list[FileCheck] = []
    hashed: dict[str, str | None] = {}  # digest → actual digest (None: missing)
    for manifest in manifests:
        for entry in manifest.files:
            if entry.digest not in hashed:
                path = store.blobs.path(entry.digest)
                hashed[entry.digest] = sha256_file(path) if path.is_file() else None
            actual = hashed[entry.digest]
            if actual is None:
                status: Status = "missing"
            elif actual == entry.digest:
                status = "ok"
            else:
                status = "corrupt"
            quarantined = None
            if status == "corrupt":
                quarantined = _quarantine(store, entry.digest)
                hashed[entry.digest] = None  # other manifests naming it now find it missing
            checks.append(
                FileCheck(
                    model=manifest.display_name,
                    filename=entry.filename,
                    digest=entry.digest,
                    status=status,
                    actual=actual if status == "corrupt" else None,
                    quarantined=quarantined,
                )
            )
    return checks


def _quarantine(store: Store, digest: str) -> str:
    folder = store.home / "quarantine"
    folder.mkdir(parents=True, exist_ok=True)
    source = store.blobs.path(digest)
    target = folder / source.name
    suffix = 1
    while target.exists():
        target = folder / f"{source.name}.{suffix}"
        suffix += 1
    os.replace(source, target)
    return str(target)
