"""License verdicts: the terms data, verdict tables per license and use, caps, lineage."""

from __future__ import annotations

import hashlib

import pytest
from cyclonedx.spdx import is_supported_id

from owl.licenses import LicenseVerdict, Use, all_terms, check, check_model, terms
from owl.licenses.terms import normalize_license
from owl.store import FileEntry, Manifest, RefKind, Source, Store
from owl.store.manifest import Parent

USES = (Use.PERSONAL, Use.RESEARCH, Use.COMMERCIAL, Use.HOSTED)
A, C, D, R = "allowed", "conditional", "denied", "review"

# license → verdicts for personal, research, commercial, hosted (no --monthly-users).
VERDICTS = {
    "apache-2.0": (A, A, C, A),
    "mit": (A, A, C, A),
    "cc0-1.0": (A, A, A, A),
    "cc-by-4.0": (A, A, C, A),
    "cc-by-nc-4.0": (A, A, D, C),
    "cc-by-nc-sa-4.0": (A, A, D, C),
    "deepfloyd-if-license": (C, C, D, C),
    "llama2": (C, C, C, C),
    "llama3": (C, C, C, C),
    "llama3.1": (C, C, C, C),
    "llama3.2": (C, C, C, C),
    "llama3.3": (C, C, C, C),
    "gemma": (C, C, C, C),
    "qwen": (A, A, C, C),
    "openrail": (C, C, C, C),
    "openrail++": (C, C, C, C),
    "creativeml-openrail-m": (C, C, C, C),
    "bigscience-bloom-rail-1.0": (C, C, C, C),
    "bigscience-openrail-m": (C, C, C, C),
    "falcon-180b-tii-license-1.0": (C, C, C, D),
    "other": (R, R, R, R),
    "unknown": (R, R, R, R),
    "made-up-license-1.0": (R, R, R, R),
}
TABLE = [
    (license_id, use, verdict)
    for license_id, verdicts in VERDICTS.items()
    for use, verdict in zip(USES, verdicts, strict=True)
]
ISSUE_IDS = [
    "apache-2.0",
    "mit",
    "llama2",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "gemma",
    "openrail",
    "openrail++",
    "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0",
    "cc-by-4.0",
    "cc-by-nc-4.0",
]


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


# ------------------------------------------------------------------------------- data


def test_every_license_the_issue_names_has_terms() -> None:
    assert [license_id for license_id in ISSUE_IDS if terms(license_id) is None] == []


def test_spdx_ids_are_spdx_or_license_refs() -> None:
    for known in all_terms():
        assert known.spdx.startswith("LicenseRef-") or is_supported_id(known.spdx), known.id
    assert terms("apache-2.0").spdx == "Apache-2.0"
    assert terms("cc-by-nc-4.0").spdx == "CC-BY-NC-4.0"
    assert terms("llama3.1").spdx.startswith("LicenseRef-")


def test_every_name_alias_and_link_leads_back_to_its_license() -> None:
    for known in all_terms():
        for text in (known.id, known.spdx, known.name, *known.aliases):
            assert normalize_license(text) == known.id, text
        if known.kind != "unknown":
            for link in (known.url, *known.urls):
                assert normalize_license(link) == known.id, link


@pytest.mark.parametrize(
    ("text", "license_id"),
    [
        ("Apache-2.0", "apache-2.0"),
        ("MIT", "mit"),
        ("llama3_1", "llama3.1"),
        ("Llama-3.2", "llama3.2"),
        ("LLAMA 3.3 Community License Agreement", "llama3.3"),
        ("CC BY-NC 4.0", "cc-by-nc-4.0"),
        ("https://ai.google.dev/gemma/terms/", "gemma"),
        ("https://www.llama.com/llama3_1/license/", "llama3.1"),
        ("https://llama.meta.com/llama3/license", "llama3"),
        ("https://llama.meta.com/llama3_10/license", None),
        ("LICENSE", None),
        ("", None),
    ],
)
def test_licenses_are_recognised_by_any_spelling(text: str, license_id: str | None) -> None:
    assert normalize_license(text) == license_id


def test_clauses_are_data() -> None:
    llama = terms("llama3.1")
    assert llama.cap.monthly_active_users == 700_000_000
    assert llama.naming.prefix == "Llama"
    assert llama.use_policy.flows_down and llama.use_policy.url
    assert any("Built with Llama" in notice for notice in llama.notices)
    assert llama.output_training.rule == "derivative"
    assert terms("llama2").output_training.rule == "forbidden"
    assert terms("gemma").output_training.rule == "derivative"
    assert terms("gemma").naming is None
    assert terms("apache-2.0").output_training.rule == "free"
    assert not terms("cc-by-nc-4.0").commercial and terms("apache-2.0").commercial


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(("license_id", "use", "expected"), TABLE)
def test_verdict_table(license_id: str, use: Use, expected: str) -> None:
    verdict = check(license_id, use=use)
    assert verdict.verdict == expected, verdict.reasons
    assert verdict.reasons
    assert verdict.exit_code == {A: 0, C: 0, D: 1, R: 2}[expected]
    if expected == C:
        assert verdict.obligations


def test_no_license_is_review() -> None:
    verdict = check(None, use=Use.PERSONAL)
    assert (verdict.verdict, verdict.license, verdict.exit_code) == (R, None, 2)


def test_an_unknown_license_is_named() -> None:
    verdict = check("Some-Custom-License", use="commercial")
    assert verdict.license == "Some-Custom-License"
    assert verdict.reasons == [
        "unknown license 'Some-Custom-License': owl has no record of its terms; read them"
    ]


def test_denials_name_the_clause() -> None:
    nc = check("cc-by-nc-4.0", use="commercial")
    assert "NonCommercial" in nc.reasons[0] and "§2(a)(1)" in nc.reasons[0]
    falcon = check("falcon-180b-tii-license-1.0", use="hosted")
    assert "Hosting Use" in falcon.reasons[0] and "TII" in falcon.reasons[0]


def test_permissive_obligations_bind_only_when_shared() -> None:
    personal = check("apache-2.0", use="personal")
    assert personal.verdict == A
    assert personal.obligations and all(
        line.startswith("If you share") for line in personal.obligations
    )
    assert "only if you share" in personal.reasons[0]
    assert check("apache-2.0", use="commercial").obligations == personal.obligations
    assert check("cc0-1.0", use="commercial").obligations == []


def test_llama_obligations_for_a_product() -> None:
    verdict = check("llama3.1", use="hosted", monthly_users=1_000)
    text = "\n".join(verdict.obligations)
    assert "Built with Llama" in text and "Acceptable Use Policy" in text
    assert 'name beginning with "Llama"' in text
    assert "§1.b.iv" in verdict.reasons[0]


@pytest.mark.parametrize("use", [Use.COMMERCIAL, Use.HOSTED])
@pytest.mark.parametrize(
    ("license_id", "cap", "licensor"),
    [
        ("llama3.1", 700_000_000, "Meta"),
        ("llama2", 700_000_000, "Meta"),
        ("qwen", 100_000_000, "Alibaba"),
    ],
)
def test_user_cap_boundary(use: Use, license_id: str, cap: int, licensor: str) -> None:
    at_cap = check(license_id, use=use, monthly_users=cap)
    # "greater than" the cap: exactly the cap is within it, as good as a single user.
    assert at_cap.verdict == check(license_id, use=use, monthly_users=1).verdict != D
    assert f"{cap:,}" in at_cap.reasons[-1] and "within" in at_cap.reasons[-1]
    assert not any(f"no more than {cap:,}" in line for line in at_cap.obligations)
    above = check(license_id, use=use, monthly_users=cap + 1)
    assert above.verdict == D and above.exit_code == 1
    assert f"more than {cap:,} monthly active users" in above.reasons[0]
    assert licensor in above.reasons[0] and "§" in above.reasons[0]
    unknown = check(license_id, use=use)
    assert unknown.verdict == C
    assert any(f"no more than {cap:,}" in line for line in unknown.obligations)


def test_user_cap_is_not_an_obligation_of_personal_use() -> None:
    verdict = check("llama3.1", use="personal")
    assert not any("700,000,000" in line for line in verdict.obligations)
    # Qwen's cap limits commercial use only.
    assert check("qwen", use="personal", monthly_users=10**9).verdict == A


def test_negative_monthly_users_are_refused() -> None:
    with pytest.raises(ValueError):
        check("llama3.1", use="commercial", monthly_users=-1)


# ------------------------------------------------------------------------- for a model


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


def test_verdict_json_shape() -> None:
    payload = check("mit", use="personal").model_dump(mode="json")
    assert set(payload) == {"license", "verdict", "obligations", "reasons"}
    assert LicenseVerdict.model_validate(payload).verdict == A
