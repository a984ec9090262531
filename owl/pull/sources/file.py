"""A local file, copied into the store."""

from __future__ import annotations

from owl.config import Settings
from owl.errors import SourceNotFound
from owl.pull.sources import Fetched
from owl.store.blobs import BlobStore, Progress
from owl.store.ref import ModelRef


def fetch(
    ref: ModelRef,
    *,
    blobs: BlobStore,
    settings: Settings,
    progress: Progress | None = None,
    allow_private: bool = True,  # unused: a local file is not fetched over a network
) -> Fetched:
    """Copy the file into the blob store, hashing it on the way."""
    assert ref.path is not None
    path = ref.path.expanduser()
    if not path.exists():
        raise SourceNotFound(f"no such file: {path}; check the path")
    if not path.is_file():
        raise SourceNotFound(
            f"{path} is not a file, nor a model folder (it has no config.json); give the path "
            "of a model file (.gguf) or of a Hugging Face model folder"
        )
    digest = blobs.import_file(path, progress=progress)
    return Fetched(
        digest=digest, size=path.stat().st_size, filename=path.name, uri=str(path.resolve())
    )
