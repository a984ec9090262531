"""owl.pull.lineage: a stored model's verdict, its parents looked up in the store."""

from __future__ import annotations

import hashlib

import pytest

from owl.pull import check_model
from owl.store import FileEntry, Manifest, RefKind, Source, Store
from owl.store.manifest import Parent

A, C, D, R = "allowed", "conditional", "denied", "review"


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


def _manifest(
    name: str,
    *,
    license: str | None = None,
    sources: dict[str, str] | None = None,
    parents: list[Parent] | None = None,
) -> Manifest:
    return Manifest(
        name=name,
        format="gguf",
        files=[FileEntry(filename=f"{name}.gguf", digest=_digest(name), size=1)],
        source=Source(kind=RefKind.FILE, uri=f"/models/{name}.gguf"),
        license=license,
        license_sources=sources or {},
        parents=parents or [],
    )


def _parent(name: str, relation: str, license: str | None) -> Parent:
    return Parent(name=name, digest=_digest(name), relation=relation, license=license)


def test_a_model_is_judged_by_its_license(store: Store) -> None:
    verdict = check_model(_manifest("m", license="cc-by-nc-4.0"), store=store, use="commercial")
    assert (verdict.license, verdict.verdict) == ("cc-by-nc-4.0", D)


def test_a_model_without_a_license_is_review(store: Store) -> None:
    verdict = check_model(_manifest("nameless"), store=store, use="personal")
    assert verdict.verdict == R and "nameless" in verdict.reasons[0]


def test_disagreeing_sources_are_said_and_the_stricter_decides(store: Store) -> None:
    manifest = _manifest(
        "mixed", license="apache-2.0", sources={"gguf": "apache-2.0", "card": "llama3.1"}
    )
    verdict = check_model(manifest, store=store, use="commercial")
    assert (verdict.license, verdict.verdict) == ("llama3.1", C)
    assert verdict.reasons[0] == (
        "license sources disagree (gguf says apache-2.0, card says llama3.1): "
        "judged by the stricter, llama3.1"
    )
    nc = _manifest("nc", sources={"gguf": "mit", "card": "CC-BY-NC-4.0"})
    assert check_model(nc, store=store, use="commercial").verdict == D


def test_the_license_the_user_set_decides(store: Store) -> None:
    manifest = _manifest("set", license="mit", sources={"card": "other", "user": "mit"})
    verdict = check_model(manifest, store=store, use="personal")
    assert (verdict.license, verdict.verdict) == ("mit", A)
    assert "disagree" in verdict.reasons[0] and "card says other" in verdict.reasons[0]


def test_a_quantized_child_carries_its_parents_terms(store: Store) -> None:
    store.save(_manifest("llama3.1-8b", license="llama3.1"))
    child = _manifest(
        "llama3.1-8b.q4", license="apache-2.0", parents=[_parent("llama3.1-8b", "quantized", None)]
    )
    verdict = check_model(child, store=store, use="commercial")
    assert (verdict.license, verdict.verdict) == ("apache-2.0", C)
    text = "\n".join(verdict.obligations)
    assert "Built with Llama" in text and 'name beginning with "Llama"' in text
    assert "NOTICE" in text  # the child's own Apache obligations stay
    assert "derived (quantized) from llama3.1-8b: its terms carry over" in verdict.reasons
    assert any(reason.startswith("llama3.1-8b: llama3.1") for reason in verdict.reasons)
    # Personal use: the parent's use policy binds it, though Apache alone would not.
    assert check_model(child, store=store, use="personal").verdict == C
    # The parent's cap reaches the child too.
    assert check_model(child, store=store, use="hosted", monthly_users=800_000_000).verdict == D


def test_lineage_uses_the_recorded_license_of_a_parent_not_stored(store: Store) -> None:
    child = _manifest("q", license="mit", parents=[_parent("gone", "quantized", "cc-by-nc-4.0")])
    verdict = check_model(child, store=store, use="commercial")
    assert verdict.verdict == D and "derived (quantized) from gone" in verdict.reasons[1]
    unrecorded = _manifest("u", license="mit", parents=[_parent("gone", "converted", None)])
    assert check_model(unrecorded, store=store, use="personal").verdict == R


def test_lineage_goes_all_the_way_up(store: Store) -> None:
    store.save(_manifest("base", license="cc-by-nc-4.0"))
    store.save(
        _manifest("tuned", license="apache-2.0", parents=[_parent("base", "fine-tuned", None)])
    )
    child = _manifest(
        "tuned.q8", license="apache-2.0", parents=[_parent("tuned", "quantized", None)]
    )
    verdict = check_model(child, store=store, use="commercial")
    assert verdict.verdict == D
    assert any("tuned: base: cc-by-nc-4.0" in reason for reason in verdict.reasons)


def test_a_changed_parent_is_judged_by_the_license_recorded_at_derivation(store: Store) -> None:
    store.save(_manifest("moved", license="apache-2.0"))
    parent = Parent(name="moved", digest=_digest("old"), relation="quantized", license="gemma")
    verdict = check_model(
        _manifest("c", license="apache-2.0", parents=[parent]), store=store, use="personal"
    )
    assert verdict.verdict == C
    assert "derived (quantized) from moved (the stored one has changed since)" in verdict.reasons[1]


def test_lineage_cycles_end(store: Store) -> None:
    store.save(_manifest("a", license="mit", parents=[_parent("b", "merged", "mit")]))
    store.save(_manifest("b", license="mit", parents=[_parent("a", "merged", "mit")]))
    verdict = check_model(store.find(_manifest("a").model_name), store=store, use="personal")
    assert verdict.verdict == A


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [
        ("apache-2.0", "mit", A),
        ("llama3.1", "mit", C),
        ("llama2", "mit", D),
        ("llama2", "llama2", C),
    ],
)
def test_distillation_follows_the_teachers_rule_for_outputs(
    store: Store, teacher: str, student: str, expected: str
) -> None:
    child = _manifest("student", license=student, parents=[_parent("teacher", "teacher", teacher)])
    verdict = check_model(child, store=store, use="personal")
    assert verdict.verdict == expected
    assert any("trained on outputs of teacher" in reason for reason in verdict.reasons)
