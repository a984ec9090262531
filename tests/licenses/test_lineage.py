"""owl.licenses.lineage: the verdict over a chain the caller hands in, no store involved."""

from __future__ import annotations

import hashlib

from owl.licenses import Ancestor, Lineage, check_lineage
from owl.store import FileEntry, Manifest, RefKind, Source
from owl.store.manifest import Parent


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def _manifest(name: str, license: str | None, parents: list[Parent] | None = None) -> Manifest:
    return Manifest(
        name=name,
        format="gguf",
        files=[FileEntry(filename=f"{name}.gguf", digest=_digest(name), size=1)],
        source=Source(kind=RefKind.FILE, uri=f"/models/{name}.gguf"),
        license=license,
        parents=parents or [],
    )


def test_a_stored_unchanged_parent_is_judged_by_its_own_lineage() -> None:
    parent = Parent(name="base", digest=_digest("base"), relation="quantized", license=None)
    base = Lineage(manifest=_manifest("base", "cc-by-nc-4.0"))
    child = Lineage(
        manifest=_manifest("base.q4", "apache-2.0", [parent]),
        ancestors=(Ancestor(parent=parent, stored=base, in_store=True),),
    )
    verdict = check_lineage(child, use="commercial")
    assert verdict.verdict == "denied"
    assert "derived (quantized) from base: its terms carry over" in verdict.reasons


def test_a_changed_parent_is_judged_by_what_the_child_recorded() -> None:
    parent = Parent(name="base", digest=_digest("old"), relation="quantized", license="gemma")
    changed = Lineage(manifest=_manifest("base", "apache-2.0"))
    child = Lineage(
        manifest=_manifest("c", "apache-2.0", [parent]),
        ancestors=(Ancestor(parent=parent, stored=changed, in_store=True),),
    )
    verdict = check_lineage(child, use="personal")
    assert verdict.verdict == "conditional"
    assert "derived (quantized) from base (the stored one has changed since)" in verdict.reasons[1]


def test_a_parent_neither_stored_nor_recorded_is_review() -> None:
    parent = Parent(name="gone", digest=_digest("gone"), relation="converted", license=None)
    child = Lineage(manifest=_manifest("u", "mit", [parent]), ancestors=(Ancestor(parent=parent),))
    assert check_lineage(child, use="personal").verdict == "review"
