"""A stored model's verdict: its own license sources, and the terms its lineage carries.

The caller hands in the chain (a Lineage: the model, each parent it records, and what the
store holds under that parent's name); this module reads no store. owl.pull.lineage walks
the store to build one.
"""

from __future__ import annotations

from dataclasses import dataclass

from owl.licenses.check import (
    VERDICT_RANK,
    LicenseVerdict,
    check,
    describe_sources,
    group_sources,
)
from owl.licenses.terms import Use, license_key, terms
from owl.store.manifest import Manifest, Parent


@dataclass(frozen=True)
class Ancestor:
    """One parent a model records, and what the store holds under the parent's name."""

    parent: Parent
    # The stored model of that name with its own ancestors; None when none is stored, or when
    # it is already on the chain (a loop of names: it is judged once, where it first came).
    stored: Lineage | None = None
    in_store: bool = False  # a model of that name is stored, whether or not `stored` is set

    @property
    def same(self) -> bool:
        """Whether the stored model still holds the file the child was derived from."""
        return self.stored is not None and any(
            entry.digest == self.parent.digest for entry in self.stored.manifest.files
        )


@dataclass(frozen=True)
class Lineage:
    """A model and its ancestors, as far as the store knows them."""

    manifest: Manifest
    ancestors: tuple[Ancestor, ...] = ()


def check_lineage(
    lineage: Lineage, *, use: Use | str, monthly_users: int | None = None
) -> LicenseVerdict:
    """The verdict for a stored model: its license, and the terms it carries from its parents.

    When its license sources disagree, the license the user set decides, else the one whose
    verdict for this use is stricter (denied > review > conditional > allowed, then more
    obligations); the reasons say so. Each parent (the stored one where it is unchanged, else
    the license recorded when owl derived the model) adds its obligations, and the stricter
    verdict wins.
    """
    return _model_verdict(lineage, Use(use), monthly_users)


def _rank(verdict: LicenseVerdict) -> tuple[int, int]:
    return VERDICT_RANK[verdict.verdict], len(verdict.obligations)


def _model_verdict(lineage: Lineage, use: Use, monthly_users: int | None) -> LicenseVerdict:
    verdict = _own_verdict(lineage.manifest, use, monthly_users)
    for ancestor in lineage.ancestors:
        inherited, how = _parent_verdict(ancestor, use, monthly_users)
        verdict = _inherit(verdict, inherited, ancestor.parent, how)
    return verdict


def _own_verdict(manifest: Manifest, use: Use, monthly_users: int | None) -> LicenseVerdict:
    found: dict[str, str | None] = dict(manifest.license_sources)
    grouped = group_sources(found)
    if manifest.license and license_key(manifest.license) not in grouped:
        grouped[license_key(manifest.license)] = ["the manifest"]
    if not grouped:
        verdict = check(None, use=use)
        verdict.reasons = [
            f"no license is recorded for {manifest.display_name}: read its terms "
            "(its model card, a LICENSE file)"
        ]
        return verdict
    if len(grouped) == 1:
        return check(next(iter(grouped)), use=use, monthly_users=monthly_users)
    said = describe_sources(grouped)
    user = next((lid for lid, sources in grouped.items() if "user" in sources), None)
    if user is not None:
        verdict = check(user, use=use, monthly_users=monthly_users)
        verdict.reasons.insert(0, f"license sources disagree ({said}): judged by {user}, as set")
        return verdict
    candidates = [check(lid, use=use, monthly_users=monthly_users) for lid in grouped]
    verdict = max(candidates, key=_rank)
    verdict.reasons.insert(
        0, f"license sources disagree ({said}): judged by the stricter, {verdict.license}"
    )
    return verdict


def _parent_verdict(
    ancestor: Ancestor, use: Use, monthly_users: int | None
) -> tuple[LicenseVerdict, str]:
    if ancestor.same:
        assert ancestor.stored is not None
        return _model_verdict(ancestor.stored, use, monthly_users), ""
    changed = " (the stored one has changed since)" if ancestor.in_store else ""
    if ancestor.parent.license:
        return check(ancestor.parent.license, use=use, monthly_users=monthly_users), changed
    if ancestor.stored is not None:
        return _model_verdict(ancestor.stored, use, monthly_users), changed
    verdict = LicenseVerdict(
        license=None,
        verdict="review",
        reasons=["its license was not recorded and it is not in the store: read its terms"],
    )
    return verdict, ""


def _inherit(
    child: LicenseVerdict, inherited: LicenseVerdict, parent: Parent, how: str
) -> LicenseVerdict:
    where = f"{parent.name}{how}"
    known = terms(inherited.license)
    training = known.output_training if known is not None else None
    if parent.relation == "teacher" and training is not None:
        # Trained on the teacher's outputs: what reaches the student is what the teacher's
        # terms say of outputs, not the teacher's license as a whole.
        said = f"{inherited.license} {training.clause or ''}".strip()
        if training.rule == "free":
            note = f"trained on outputs of {where}: {said}: {training.text} Its terms stay behind"
            return child.model_copy(update={"reasons": [*child.reasons, note]})
        if training.rule == "forbidden" and license_key(child.license or "") != inherited.license:
            note = f"trained on outputs of {where}: {said}: {training.text}"
            return LicenseVerdict(
                license=child.license,
                verdict="denied",
                obligations=child.obligations,
                reasons=[*child.reasons, note],
            )
    if parent.relation == "teacher":
        note = f"trained on outputs of {where}: its terms carry over"
    else:
        note = f"derived ({parent.relation}) from {where}: its terms carry over"
    return LicenseVerdict(
        license=child.license,
        verdict=max(child.verdict, inherited.verdict, key=VERDICT_RANK.__getitem__),
        obligations=list(dict.fromkeys([*child.obligations, *inherited.obligations])),
        reasons=[*child.reasons, note, *(f"{parent.name}: {r}" for r in inherited.reasons)],
    )
