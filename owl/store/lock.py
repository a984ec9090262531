"""owl.lock: a project's models pinned to their bytes, so none can change under it.

A TOML file in the project (like uv.lock or package-lock.json): each model name with the
digests of its files and the source to pull them from. `owl pull --locked` fetches exactly
those bytes and `owl serve --locked` serves only models whose files match.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import tomli_w
from pydantic import BaseModel, Field, ValidationError

from owl.errors import LockMismatch, StoreCorrupted
from owl.store.manifest import FileEntry, Manifest, Source

LOCK_FILE = "owl.lock"
LOCK_VERSION = 1
_HEADER = (
    "# owl.lock: the models this project uses, pinned to their bytes.\n"
    "# Written by `owl lock`; read by `owl pull --locked` and `owl serve --locked`.\n"
    "# Commit it with the project. Do not edit by hand: run `owl lock NAME` instead.\n\n"
)


class LockedModel(BaseModel):
    """One pinned model: the bytes it must have, and where they come from."""

    format: str
    source: Source
    license: str | None = None
    files: list[FileEntry]
    projector_source: Source | None = None  # a vision model's projector (mmproj), pulled apart

    def digests(self) -> dict[str, str]:
        return {entry.filename: entry.digest for entry in self.files}


class Lock(BaseModel):
    version: int = LOCK_VERSION
    models: dict[str, LockedModel] = Field(default_factory=dict)

    def entry(self, name: str) -> LockedModel:
        """The pinned model `name` (a display name such as 'smollm2' or 'x:q4')."""
        locked = self.models.get(name)
        if locked is None:
            raise LockMismatch(
                f"model '{name}' is not in {LOCK_FILE}; run `owl lock {name}` to pin it"
            )
        return locked


def locked_model(manifest: Manifest) -> LockedModel:
    """What owl.lock records of a stored model."""
    return LockedModel(
        format=manifest.format,
        source=manifest.source,
        license=manifest.license,
        files=manifest.files,
        projector_source=manifest.projector_source,
    )


def read_lock(path: Path) -> Lock:
    """The lock at `path`; a clear error if it is missing or damaged."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise LockMismatch(
            f"there is no {path}; run `owl lock MODEL...` in the project to write one"
        ) from err
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise StoreCorrupted(
            f"{path} cannot be read ({err}); restore it from version control"
        ) from err
    try:
        lock = Lock.model_validate(data)
    except ValidationError as err:
        problem = err.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        raise StoreCorrupted(
            f"{path} is not a valid lock file ({where}: {problem['msg']}); "
            "restore it from version control or write it again with `owl lock`"
        ) from err
    if lock.version != LOCK_VERSION:
        raise StoreCorrupted(
            f"{path} has lock version {lock.version}; this owl reads version {LOCK_VERSION}"
        )
    return lock


def write_lock(path: Path, lock: Lock) -> None:
    """Write the lock atomically (a temp file renamed over the old one)."""
    data = lock.model_dump(mode="json", exclude_none=True)
    data["models"] = dict(sorted(data["models"].items()))
    text = _HEADER + tomli_w.dumps(data)
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


def check_locked(manifest: Manifest, lock: Lock) -> None:
    """LockMismatch unless the stored model's files are exactly the pinned ones."""
    name = manifest.display_name
    pinned = lock.entry(name).digests()
    stored = {entry.filename: entry.digest for entry in manifest.files}
    if stored == pinned:
        return
    changed = sorted(
        f"{filename}: stored {stored.get(filename, 'nothing')}, pinned {digest}"
        for filename, digest in pinned.items()
        if stored.get(filename) != digest
    ) + sorted(f"{filename}: not pinned" for filename in stored.keys() - pinned.keys())
    raise LockMismatch(
        f"model '{name}' differs from {LOCK_FILE} ({'; '.join(changed)}); "
        f"`owl pull --locked {name}` fetches the pinned files, or `owl lock {name}` "
        "pins what is stored now"
    )
