"""The embedding model of a collection: named once when the collection is made, recorded in
its index with the digest of its weights, and the same model (same bytes) ever after — vectors
of another model would not be comparable with the stored ones."""

from __future__ import annotations

from owl.config import Settings
from owl.engine import Capability, load
from owl.errors import DocumentError
from owl.store import Manifest, Store


def embedder_id(manifest: Manifest) -> str:
    """What a collection records of its model: its name and the digest of its weights."""
    return f"{manifest.display_name}@{manifest.weights.digest}"


def model_of(recorded: str) -> str:
    """The model name in a recorded embedder id."""
    return recorded.rsplit("@", 1)[0]


def load_text_embedder(
    name: str, *, store: Store, settings: Settings, recorded: str | None = None
):  # -> (a loaded embedder, its id)
    """The stored embedding model `name` (pulled first if it is a built-in one), loaded; when
    the collection `recorded` one, it must be the same model with the same weights."""
    from owl.pull import resolve

    manifest = resolve(name, store=store, settings=settings, pull_missing=True)
    identity = embedder_id(manifest)
    if recorded is not None and recorded != identity:
        raise DocumentError(
            f"this collection was built with {recorded}, not {identity}; search it with its "
            "own model (leave out --model), or rebuild it: `owl docs rm NAME` then "
            "`owl docs add NAME PATH... --model MODEL`"
        )
    embedder = load(manifest, store=store, settings=settings, capability=Capability.EMBED)
    return embedder, identity
