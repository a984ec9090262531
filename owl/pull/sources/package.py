"""A model file shipped inside an installed Python distribution (no network needed)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from owl.config import Settings
from owl.errors import SourceNotFound
from owl.pull.sources import Fetched
from owl.store.blobs import BlobStore, Progress
from owl.store.ref import ModelRef


def locate(ref: ModelRef, *, folder: bool = False) -> Path:
    """The path of the file (or, with `folder`, the file or folder) inside the installed
    distribution."""
    assert ref.distribution and ref.filename
    try:
        dist = distribution(ref.distribution)
    except PackageNotFoundError:
        raise SourceNotFound(
            f"Python package {ref.distribution!r} is not installed; "
            f"run `pip install {ref.distribution}`"
        ) from None
    path = Path(str(dist.locate_file(ref.filename)))
    if not (path.is_file() or (folder and path.is_dir())):
        raise SourceNotFound(
            f"package {ref.distribution!r} has no file {ref.filename!r}; "
            f"reinstall it with `pip install --force-reinstall {ref.distribution}`"
        )
    return path


def package_folder(ref: ModelRef) -> tuple[Path, str] | None:
    """The model folder a `package:` reference names, and the distribution's version; None
    when it names a file."""
    path = locate(ref, folder=True)
    if not path.is_dir():
        return None
    return path, distribution(ref.distribution or "").version


def fetch(
    ref: ModelRef,
    *,
    blobs: BlobStore,
    settings: Settings,
    progress: Progress | None = None,
    allow_private: bool = True,  # unused: an installed package is not fetched over a network
) -> Fetched:
    """Copy the packaged file into the blob store, so uninstalling the package loses nothing."""
    path = locate(ref)
    digest = blobs.import_file(path, progress=progress)
    version = distribution(ref.distribution or "").version
    return Fetched(
        digest=digest, size=path.stat().st_size, filename=path.name, uri=ref.raw, revision=version
    )
