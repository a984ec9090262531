"""The store: content-addressed blobs, manifests, aliases, and the sources that fill them."""

from owl.store.manifest import FileEntry, Manifest, Source
from owl.store.pull import open_store, pull, pull_locked, register_embedded, resolve
from owl.store.ref import ModelName, ModelRef, RefKind, parse_name, parse_ref
from owl.store.store import Store

__all__ = [
    "FileEntry",
    "Manifest",
    "ModelName",
    "ModelRef",
    "RefKind",
    "Source",
    "Store",
    "open_store",
    "parse_name",
    "parse_ref",
    "pull",
    "pull_locked",
    "register_embedded",
    "resolve",
]
