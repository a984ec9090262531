"""License verdicts: the terms data, verdict tables per license and use, caps."""

from __future__ import annotations

import pytest
from cyclonedx.spdx import is_supported_id

from owl.licenses import LicenseVerdict, Use, all_terms, check, terms
from owl.licenses.terms import normalize_license

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


def test_verdict_json_shape() -> None:
    payload = check("mit", use="personal").model_dump(mode="json")
    assert set(payload) == {"license", "verdict", "obligations", "reasons"}
    assert LicenseVerdict.model_validate(payload).verdict == A
