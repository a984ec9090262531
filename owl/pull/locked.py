"""pull --locked: bring a model into the store with exactly the files owl.lock pins."""

from __future__ import annotations

from owl.config import Settings
from owl.errors import DigestMismatch, LockMismatch
from owl.pull.references import derived_message, pull
from owl.store.blobs import Progress
from owl.store.lock import LOCK_FILE, Lock
from owl.store.manifest import Manifest
from owl.store.ref import RefKind, parse_name
from owl.store.store import Store


def pull_locked(
    name: str, *, lock: Lock, store: Store, settings: Settings, progress: Progress | None = None
) -> Manifest:
    """Bring the model `name` into the store with exactly the files owl.lock pins.

    A stored copy that matches is kept; one with other files is refused (LockMismatch) rather
    than replaced, and so are bytes at the source that differ from the pin.
    """
    locked = lock.entry(name)
    pinned = locked.digests()
    existing = store.find(parse_name(name))
    if existing is not None:
        stored = {entry.filename: entry.digest for entry in existing.files}
        if stored != pinned:
            raise LockMismatch(
                f"the stored '{name}' has other files than {LOCK_FILE} pins; "
                f"`owl rm {name}` and then `owl pull --locked {name}` fetches the pinned ones"
            )
        if not store.damaged(existing):
            return existing
    if locked.source.kind is RefKind.NAME:
        raise LockMismatch(derived_message(name, locked.source.uri))
    if len(locked.files) != 1:
        raise LockMismatch(
            f"{LOCK_FILE} pins {len(locked.files)} files for '{name}'; owl pulls one"
        )
    digest = locked.files[0].digest
    source = locked.source
    uri = source.uri
    if source.kind is RefKind.HF and source.revision:
        uri = f"{uri}@{source.revision}"
    elif source.kind is RefKind.URL:
        uri = f"{uri.split('#', 1)[0]}#sha256={digest.removeprefix('sha256:')}"
    try:
        return pull(
            uri,
            store=store,
            settings=settings,
            name=name,
            license=locked.license,
            progress=progress,
            expect_digest=digest,
        )
    except DigestMismatch as err:  # an http source checks the pin while it downloads
        raise LockMismatch(
            f"{source.uri} now serves other bytes than {LOCK_FILE} pins ({digest}): the model "
            f"changed at its source. Nothing was stored; check the new file, then "
            f"`owl lock {name}` to accept it"
        ) from err
