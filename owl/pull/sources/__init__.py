"""Sources: where a model's bytes come from. Each puts one file into the blob store.

A source module has `fetch(ref, *, blobs, settings, progress, allow_private) -> Fetched`;
the registry below maps a reference kind to it, so a new source is one module and one line.
`allow_private=False` (a pull a server makes for a client) refuses hosts on loopback and
private addresses where the reference chooses the host (http); a local file or package is
no network source, and the Hub's endpoint is the operator's setting, not the reference's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from owl.config import Settings
from owl.store.blobs import BlobStore, Progress
from owl.store.ref import ModelRef, RefKind


@dataclass(frozen=True)
class Fetched:
    """A file now in the blob store, and what its source said about it."""

    digest: str
    size: int
    filename: str
    uri: str
    revision: str | None = None
    card: str | None = None  # the model card (README.md) where the source has one


Fetch = Callable[..., Fetched]

_MODULES = {
    RefKind.FILE: "owl.pull.sources.file",
    RefKind.URL: "owl.pull.sources.http",
    RefKind.HF: "owl.pull.sources.hf",
    RefKind.PACKAGE: "owl.pull.sources.package",
}


def fetch(
    ref: ModelRef,
    *,
    blobs: BlobStore,
    settings: Settings,
    progress: Progress | None = None,
    allow_private: bool = True,
) -> Fetched:
    """Bring the file `ref` names into `blobs` (modules load lazily: huggingface_hub is slow)."""
    module = import_module(_MODULES[ref.kind])
    return module.fetch(
        ref, blobs=blobs, settings=settings, progress=progress, allow_private=allow_private
    )
