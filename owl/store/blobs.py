"""Content-addressed blobs: `OWL_HOME/blobs/sha256-<hex>`, each file stored once.

Bytes are written to a temp file in the blob folder and hashed as they are written; the
temp file is renamed into place only when it is complete and its digest is the expected
one. A blob path therefore always holds a whole, verified file.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from filelock import FileLock

from owl.errors import DigestMismatch, InsufficientSpace, StoreCorrupted
from owl.store.ref import validate_digest

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]


def hex_of(digest: str) -> str:
    return validate_digest(digest).removeprefix("sha256:")


class HashingWriter:
    """Appends to a temp file while hashing; resumes by hashing what is already there."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.hasher = hashlib.sha256()
        self.size = 0
        if path.exists():
            with path.open("rb") as existing:
                for block in iter(lambda: existing.read(CHUNK), b""):
                    self.hasher.update(block)
                    self.size += len(block)
        self._file: BinaryIO = path.open("ab")

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.hasher.update(data)
        self.size += len(data)

    def restart(self) -> None:
        """Forget the bytes written so far (a server that ignored our Range request)."""
        self._file.seek(0)
        self._file.truncate()
        self.hasher = hashlib.sha256()
        self.size = 0

    @property
    def digest(self) -> str:
        return "sha256:" + self.hasher.hexdigest()

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()


class BlobStore:
    """The blob folder. Every path it hands out comes from a validated digest."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.root / f"sha256-{hex_of(digest)}"

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def intact(self, digest: str, size: int) -> bool:
        """Whether the blob is there with the size its manifest records: a cheap check (one
        stat) that finds a missing or truncated blob. Bytes changed in place need a re-hash
        (`owl verify`), which moves them aside, so that this then finds the blob missing."""
        path = self.path(digest)
        try:
            return path.is_file() and path.stat().st_size == size
        except OSError:  # removed between the two calls
            return False

    def require(self, digest: str) -> Path:
        """The path of a blob that must exist (a manifest names it)."""
        path = self.path(digest)
        if not path.is_file():
            raise StoreCorrupted(
                f"blob {digest} is missing from {self.root}; pull the model again to restore it"
            )
        return path

    def partial(self, key: str) -> Path:
        """The temp file for a download identified by `key` (a digest or a URL's hash)."""
        return self.root / f"partial-{key}"

    def lock(self, key: str) -> FileLock:
        """An inter-process lock so that two pulls of one file never write it at once."""
        locks = self.root / ".locks"
        locks.mkdir(exist_ok=True)
        return FileLock(str(locks / f"{key}.lock"))

    def commit(self, writer: HashingWriter, *, expected: str | None, source: str) -> str:
        """Move a finished temp file into place under its digest, or discard it on mismatch."""
        writer.close()
        digest = writer.digest
        if expected is not None and digest != expected:
            writer.path.unlink(missing_ok=True)
            raise DigestMismatch(
                f"{source}: downloaded bytes have {digest}, expected {expected}; "
                "nothing was stored. Check the URL and its #sha256= value"
            )
        target = self.path(digest)
        if self.intact(digest, writer.size):
            writer.path.unlink(missing_ok=True)
        else:  # absent, or a damaged copy (truncated): the verified bytes take its place
            os.chmod(writer.path, 0o444)
            os.replace(writer.path, target)
        return digest

    def import_file(
        self, src: Path, *, expected: str | None = None, progress: Progress | None = None
    ) -> str:
        """Copy a local file into the store, hashing as it copies; returns its digest."""
        total = src.stat().st_size
        key = hashlib.sha256(str(src.resolve()).encode()).hexdigest()[:32]
        with self.lock(key):
            tmp = self.partial(key)
            tmp.unlink(missing_ok=True)
            writer = HashingWriter(tmp)
            try:
                with src.open("rb") as source:
                    for block in iter(lambda: source.read(CHUNK), b""):
                        writer.write(block)
                        if progress:
                            progress(writer.size, total)
            except BaseException:
                writer.close()
                tmp.unlink(missing_ok=True)
                raise
            return self.commit(writer, expected=expected, source=str(src))

    def remove(self, digest: str) -> None:
        path = self.path(digest)
        if path.exists():
            os.chmod(path, 0o644)
            path.unlink()

    def digests(self) -> set[str]:
        return {
            "sha256:" + path.name.removeprefix("sha256-")
            for path in self.root.glob("sha256-*")
            if len(path.name) == len("sha256-") + 64
        }


def sha256_file(path: Path) -> str:
    """The digest of a file on disk, read in chunks."""
    hasher = hashlib.sha256()
    with path.open("rb") as source:
        for block in iter(lambda: source.read(CHUNK), b""):
            hasher.update(block)
    return "sha256:" + hasher.hexdigest()


def ensure_free_space(folder: Path, size: int, *, source: str) -> None:
    """Fail before a download that cannot fit, rather than with a full disk midway."""
    free = shutil.disk_usage(folder).free
    if size > free:
        raise InsufficientSpace(
            f"{source} needs {size:,} bytes but {folder} has {free:,} free; "
            "free some space (owl rm NAME) or set OWL_HOME to a larger disk"
        )
