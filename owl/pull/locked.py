"""pull --locked: bring a model into the store with exactly the files owl.lock pins."""

from __future__ import annotations

from owl.config import Settings
from owl.errors import DigestMismatch, LockMismatch, OwlError
from owl.pull.projector import add_projector
from owl.pull.references import derived_message, pull
from owl.store.blobs import Progress
from owl.store.lock import LOCK_FILE, Lock
from owl.store.manifest import PROJECTOR_ROLE, Manifest, Source
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
    model_files = [entry for entry in locked.files if entry.role != PROJECTOR_ROLE]
    projector = next((entry for entry in locked.files if entry.role == PROJECTOR_ROLE), None)
    if len(model_files) != 1 or (projector is not None and locked.projector_source is None):
        raise LockMismatch(
            f"{LOCK_FILE} pins {len(locked.files)} files for '{name}'; owl pulls one, or one "
            f"and its projector with the projector's source: `owl lock {name}` pins them again"
        )
    digest = model_files[0].digest
    source = locked.source
    try:
        manifest = pull(
            _pinned_uri(source, digest),
            store=store,
            settings=settings,
            name=name,
            license=locked.license,
            progress=progress,
            expect_digest=digest,
        )
    except DigestMismatch as err:  # an http source checks the pin while it downloads
        raise _changed_at_source(name, source, digest) from err
    if projector is None or locked.projector_source is None:
        return manifest
    return _add_pinned_projector(
        manifest, projector.digest, locked.projector_source, store=store, settings=settings,
        progress=progress,
    )  # fmt: skip


def _add_pinned_projector(
    manifest: Manifest,
    digest: str,
    source: Source,
    *,
    store: Store,
    settings: Settings,
    progress: Progress | None,
) -> Manifest:
    """The model just pulled with its pinned projector; when the projector's bytes are not
    the pinned ones, nothing stays (the model goes again): the lock is all or nothing."""
    name = manifest.display_name
    try:
        added = add_projector(
            manifest, _pinned_uri(source, digest), store=store, settings=settings,
            progress=progress,
        )  # fmt: skip
    except DigestMismatch as err:
        store.remove(manifest.model_name)
        raise _changed_at_source(name, source, digest) from err
    except OwlError:
        store.remove(manifest.model_name)
        raise
    if added.projector is None or added.projector.digest != digest:
        store.remove(added.model_name)
        raise _changed_at_source(name, source, digest)
    return added


def _pinned_uri(source: Source, digest: str) -> str:
    """The source, pinned where it can be: a Hub file at its commit, a URL to its sha256."""
    if source.kind is RefKind.HF and source.revision:
        return f"{source.uri}@{source.revision}"
    if source.kind is RefKind.URL:
        return f"{source.uri.split('#', 1)[0]}#sha256={digest.removeprefix('sha256:')}"
    return source.uri


def _changed_at_source(name: str, source: Source, digest: str) -> LockMismatch:
    return LockMismatch(
        f"{source.uri} now serves other bytes than {LOCK_FILE} pins ({digest}): the model "
        f"changed at its source. Nothing was stored; check the new file, then "
        f"`owl lock {name}` to accept it"
    )
