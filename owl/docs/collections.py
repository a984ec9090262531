"""Document collections: one SQLite index file per name under OWL_HOME/docs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from owl.config import Settings
from owl.errors import CollectionNotFound, DocumentError

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


def check_name(name: str) -> str:
    """A collection's name, if it is one: lowercase letters, digits, '.', '_', '-'."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise DocumentError(
            f"{name!r} is not a collection name; use up to 64 lowercase letters, digits, "
            "'.', '_' or '-', starting with a letter or digit (e.g. `owl docs add notes ~/notes`)"
        )
    return name


def docs_folder(settings: Settings) -> Path:
    return settings.home / "docs"


def collection_path(settings: Settings, name: str) -> Path:
    """Where collection `name`'s index lives (whether or not it exists yet)."""
    return docs_folder(settings) / f"{check_name(name)}.sqlite"


def existing_path(settings: Settings, name: str) -> Path:
    """The index file of an existing collection; CollectionNotFound saying what to do."""
    path = collection_path(settings, name)
    if not path.is_file():
        known = ", ".join(collection_names(settings)) or "none yet"
        raise CollectionNotFound(
            f"no document collection '{name}' (collections: {known}); "
            f"make it with `owl docs add {name} PATH...`"
        )
    return path


def collection_names(settings: Settings) -> list[str]:
    """Every collection under OWL_HOME, sorted."""
    folder = docs_folder(settings)
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.sqlite") if _NAME.fullmatch(p.stem))


def remove_collection(settings: Settings, name: str) -> None:
    """Delete collection `name`'s index (and SQLite's journal files beside it)."""
    path = existing_path(settings, name)
    for suffix in ("-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    path.unlink()


def summaries(settings: Settings) -> list[dict[str, Any]]:
    """Every collection: name, files, chunks, bytes and embedding model (`owl docs list`)."""
    from owl.docs.index import Index

    rows = []
    for name in collection_names(settings):
        with Index.open(existing_path(settings, name)) as index:
            rows.append({"name": name, **index.stats(), "embedder": index.embedder})
    return rows


def details(settings: Settings, name: str) -> dict[str, Any]:
    """One collection: its folders, embedding model and every file indexed (`owl docs show`)."""
    from owl.docs.index import Index

    with Index.open(existing_path(settings, name)) as index:
        files = [
            {"path": path, "sha256": record.sha256, "size": record.size, "chunks": record.chunks}
            for path, record in sorted(index.files().items())
        ]
        return {
            "name": name,
            "embedder": index.embedder,
            "dimensions": index.dimensions,
            "roots": index.roots(),
            **index.stats(),
            "files_indexed": files,
        }
