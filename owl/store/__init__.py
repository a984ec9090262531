"""The store: content-addressed blobs, manifests, refs and aliases, the lock, snapshots.

Bytes and records only: what fills the store (sources, scanning, licenses) is owl.pull.
"""

from owl.store.manifest import FileEntry, Manifest, Source
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
    "parse_name",
    "parse_ref",
]
