"""License verdicts: may I use this model this way? (The terms they judge by: terms.py.)

The rules, for one license and one use (personal, research, commercial, hosted):

- `review`: owl has no record of the terms (an unrecognised id, `other`, `unknown`, none).
- `denied`: a clause denies the use (CC BY-NC: commercial use; Falcon-180B: hosting it for
  others), or the monthly active users given are above a cap (Llama: more than 700,000,000).
- `conditional`: an obligation binds the use. A use policy binds every use; what a product
  or service must show ("Built with Llama") binds commercial and hosted use; what binds when
  you share the weights binds commercial use too (a product may ship them), as does a user
  cap that was not confirmed with --monthly-users.
- `allowed`: nothing binds. Obligations that bind only if you share the model or a derivative
  are still listed, and say so.

A stored model is judged by its license sources and by its lineage (lineage.py): a model
owl derived (quantized, converted, fine-tuned, merged) carries its parents' terms.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from owl.licenses.terms import BINDS, USE_WORDS, LicenseTerms, Use, license_key, terms

Verdict = Literal["allowed", "conditional", "denied", "review"]
VERDICT_RANK: dict[str, int] = {"allowed": 0, "conditional": 1, "review": 2, "denied": 3}
EXIT_CODES: dict[str, int] = {"allowed": 0, "conditional": 0, "denied": 1, "review": 2}


class LicenseVerdict(BaseModel):
    """May this use go ahead, on what conditions, and why."""

    license: str | None
    verdict: Verdict
    obligations: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 allowed or conditional, 1 denied, 2 review."""
        return EXIT_CODES[self.verdict]


def check(
    license_id: str | None, *, use: Use | str, monthly_users: int | None = None
) -> LicenseVerdict:
    """The verdict of license `license_id` for `use` (see the module's rules).

    `monthly_users`: the monthly active users of the products or services of the user and
    their affiliates, for licenses with a user cap; None when not known.
    """
    use = Use(use)
    if monthly_users is not None and monthly_users < 0:
        raise ValueError(f"monthly_users must be 0 or more, not {monthly_users}")
    if license_id is None or not license_id.strip():
        return LicenseVerdict(
            license=None,
            verdict="review",
            reasons=["no license is recorded: read the model's terms (its card, a LICENSE file)"],
        )
    known = terms(license_id)
    if known is None:
        given = license_id.strip()
        return LicenseVerdict(
            license=given,
            verdict="review",
            reasons=[f"unknown license {given!r}: owl has no record of its terms; read them"],
        )
    if known.kind == "unknown":
        return LicenseVerdict(
            license=known.id,
            verdict="review",
            reasons=[f"license {known.id!r} ({known.name}): read the model's own license terms"],
        )
    return _judge(known, use, monthly_users)


def _judge(known: LicenseTerms, use: Use, monthly_users: int | None) -> LicenseVerdict:
    rule = known.uses.get(use)
    if rule is not None:
        reason = f"{known.id} {rule.clause} {rule.title}: {rule.text}"
        return LicenseVerdict(license=known.id, verdict=rule.verdict, reasons=[reason])
    obligations = [ob.render(known.id) for ob in known.obligations if ob.listed(use)]
    conditions = [(ob.title, ob.clause) for ob in known.obligations if ob.binds(use)]
    reasons = []
    cap = known.cap
    if cap is not None and cap.limits(use):
        limit = f"{cap.monthly_active_users:,}"
        if monthly_users is not None and monthly_users > cap.monthly_active_users:
            licensor = known.licensor or "the licensor"
            reason = (
                f"{known.id} {cap.clause} {cap.title}: more than {limit} monthly active users "
                f"need a license from {licensor} ({monthly_users:,} given)"
            )
            return LicenseVerdict(license=known.id, verdict="denied", reasons=[reason])
        if monthly_users is not None:
            reasons.append(
                f"{known.id} {cap.clause} {cap.title}: {monthly_users:,} monthly active users "
                f"are within its cap of {limit}"
            )
        elif use in BINDS["service"]:
            obligations.insert(0, f"{cap.text} ({known.id} {cap.clause})")
            conditions.insert(0, (f"{cap.title} (user cap)", cap.clause))
    words = USE_WORDS[use]
    if conditions:
        summary = f"allows {words} on conditions: {_clauses(conditions)}"
    elif obligations:
        summary = f"allows {words}; its obligations bind only if you share the model"
    else:
        summary = f"allows {words} without conditions"
    reasons.insert(0, f"{known.id} ({known.name}) {summary}")
    return LicenseVerdict(
        license=known.id,
        verdict="conditional" if conditions else "allowed",
        obligations=obligations,
        reasons=reasons,
    )


def _clauses(conditions: list[tuple[str, str]]) -> str:
    """[(title, clause)] → "§1.b.iv Acceptable Use Policy; §1.b.i, §1.b.iii Redistribution"."""
    by_title: dict[str, list[str]] = {}
    for title, clause in conditions:
        if clause not in by_title.setdefault(title, []):
            by_title[title].append(clause)
    return "; ".join(f"{', '.join(clauses)} {title}" for title, clauses in by_title.items())


def strictness(license_id: str | None) -> tuple[int, ...]:
    """How much a license restricts, to choose between sources that disagree: higher is stricter.

    Unrecognised terms rank strictest (a person must read them); then the number of uses
    denied, left to review, and allowed only on conditions; then the number of obligations.
    """
    known = terms(license_id)
    if known is None or known.kind == "unknown":
        return (1,)
    verdicts = [check(known.id, use=use).verdict for use in Use]
    counts = (verdicts.count(verdict) for verdict in ("denied", "review", "conditional"))
    return 0, *counts, len(known.obligations)


def group_sources(found: dict[str, str | None]) -> dict[str, list[str]]:
    """{source: license} → {license id: [sources that say it]}, dropping empty ones."""
    grouped: dict[str, list[str]] = {}
    for source, value in found.items():
        if value and value.strip():
            grouped.setdefault(license_key(value), []).append(source)
    return grouped


def describe_sources(grouped: dict[str, list[str]]) -> str:
    """{license: [sources]} → "gguf says apache-2.0, card and catalog say llama3.1"."""
    return ", ".join(
        f"{' and '.join(sources)} {'says' if len(sources) == 1 else 'say'} {license_id}"
        for license_id, sources in grouped.items()
    )
