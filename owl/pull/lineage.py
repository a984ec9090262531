"""A stored model's lineage, walked through the store, and the license verdict it gives.

owl.licenses judges a chain it is handed; the walking (which parents are stored, which
changed) needs the store, so it is done here, in the layer above both.
"""

from __future__ import annotations

from owl.errors import OwlError
from owl.licenses import Ancestor, LicenseVerdict, Lineage, Use, check_lineage
from owl.store.manifest import Manifest
from owl.store.ref import parse_name
from owl.store.store import Store


def lineage_of(manifest: Manifest, *, store: Store) -> Lineage:
    """The model and every ancestor the store holds, each name followed once per chain."""
    return _walk(manifest, store, frozenset())


def check_model(
    manifest: Manifest, *, store: Store, use: Use | str, monthly_users: int | None = None
) -> LicenseVerdict:
    """The verdict for a stored model: its license, and the terms it carries from its parents.

    Each parent is looked up in the store (else judged by the license recorded when owl
    derived the model); see owl.licenses.check_lineage for the rules.
    """
    return check_lineage(lineage_of(manifest, store=store), use=use, monthly_users=monthly_users)


def _walk(manifest: Manifest, store: Store, seen: frozenset[str]) -> Lineage:
    seen = seen | {manifest.display_name}
    ancestors = []
    for parent in manifest.parents:
        stored = _stored(parent.name, store)
        usable = stored is not None and stored.display_name not in seen
        ancestors.append(
            Ancestor(
                parent=parent,
                stored=_walk(stored, store, seen) if usable and stored is not None else None,
                in_store=stored is not None,
            )
        )
    return Lineage(manifest=manifest, ancestors=tuple(ancestors))


def _stored(name: str, store: Store) -> Manifest | None:
    try:
        return store.find(parse_name(name))
    except OwlError:  # an invalid name, an unreadable manifest: use what the child recorded
        return None
