"""License terms (the data file terms.toml) and verdicts: may I use this model this way?

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

A stored model (check_model) is judged by its license sources and by its lineage: a model
owl derived (quantized, converted, fine-tuned, merged) carries its parents' terms.
"""

from __future__ import annotations

import re
import tomllib
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from owl.store.manifest import Manifest, Parent
    from owl.store.store import Store

_DATA = Path(__file__).with_name("terms.toml")


class Use(StrEnum):
    """What someone means to do with a model."""

    PERSONAL = "personal"  # your own use; nothing shared, no money involved
    RESEARCH = "research"  # non-commercial research; results may be published
    COMMERCIAL = "commercial"  # for commercial advantage: a product, a business's own use
    HOSTED = "hosted"  # serving it to other people over a network (an API, an app)


Verdict = Literal["allowed", "conditional", "denied", "review"]
VERDICT_RANK: dict[str, int] = {"allowed": 0, "conditional": 1, "review": 2, "denied": 3}
EXIT_CODES: dict[str, int] = {"allowed": 0, "conditional": 0, "denied": 1, "review": 2}

# Which uses an obligation's `on` binds. Sharing binds commercial use but not hosting: a
# product may ship the weights; a hosted service does not hand them out.
_BINDS: dict[str, frozenset[Use]] = {
    "use": frozenset(Use),
    "service": frozenset({Use.COMMERCIAL, Use.HOSTED}),
    "share": frozenset({Use.COMMERCIAL}),
    **{use.value: frozenset({use}) for use in Use},
}
_PREFIXES = {
    frozenset({"share"}): "If you share the model or a derivative: ",
    frozenset({"service"}): "In a product or service built on it: ",
    frozenset({"share", "service"}): "If you share it or build a product or service on it: ",
}
USE_WORDS = {
    Use.PERSONAL: "personal use",
    Use.RESEARCH: "research use",
    Use.COMMERCIAL: "commercial use",
    Use.HOSTED: "hosting it for others",
}
_SPDX_RE = re.compile(r"^(LicenseRef-[A-Za-z0-9.-]+|[A-Za-z0-9][A-Za-z0-9.+-]*)$")


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _when(value: str | list[str]) -> tuple[str, ...]:
    whens = (value,) if isinstance(value, str) else tuple(value)
    unknown = [when for when in whens if when not in _BINDS]
    if unknown or not whens:
        raise ValueError(f"`on` must be among {sorted(_BINDS)}, not {unknown or whens}")
    return whens


class Obligation(_Record):
    """One thing a license asks of you, and when it binds (`on`)."""

    kind: Literal[
        "license-copy",
        "notice",
        "attribution",
        "naming",
        "use-policy",
        "modification-notice",
        "share-alike",
        "noncommercial",
        "source",
        "region",
        "other",
    ]
    on: tuple[str, ...]
    clause: str
    title: str
    text: str
    url: str | None = None
    flows_down: bool = Field(False, description="Pass it on to your users and derivatives.")
    prefix: str | None = Field(None, description="A naming rule's required name start.")

    @field_validator("on", mode="before")
    @classmethod
    def _valid_on(cls, value: str | list[str]) -> tuple[str, ...]:
        return _when(value)

    def binds(self, use: Use) -> bool:
        return any(use in _BINDS[when] for when in self.on)

    def listed(self, use: Use) -> bool:
        """Shown for this use: it binds, or it would once you share the model."""
        return self.binds(use) or "share" in self.on

    def render(self, license_id: str) -> str:
        prefix = _PREFIXES.get(frozenset(self.on), "")
        where = "; ".join(filter(None, (self.url, f"{license_id} {self.clause}")))
        return f"{prefix}{self.text} ({where})"


class UseRule(_Record):
    """A use the license denies, or leaves to a person to judge."""

    verdict: Literal["denied", "review"]
    clause: str
    title: str
    text: str


class UserCap(_Record):
    """More than `monthly_active_users` needs a separate license from the licensor."""

    monthly_active_users: int = Field(gt=0)
    on: tuple[str, ...]
    clause: str
    title: str
    text: str

    @field_validator("on", mode="before")
    @classmethod
    def _valid_on(cls, value: str | list[str]) -> tuple[str, ...]:
        return _when(value)

    def limits(self, use: Use) -> bool:
        return any(use in _BINDS[when] for when in self.on)


class OutputTraining(_Record):
    """What the terms say of a model trained on this model's outputs (distillation)."""

    rule: Literal["free", "derivative", "forbidden"]
    clause: str | None = None
    text: str


class LicenseTerms(_Record):
    """One license, as terms.toml records it."""

    id: str
    name: str
    spdx: str
    url: str
    kind: Literal[
        "permissive",
        "copyleft",
        "responsible-ai",
        "community",
        "noncommercial",
        "bespoke",
        "unknown",
    ]
    licensor: str | None = None
    aliases: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    note: str | None = None
    uses: dict[Use, UseRule] = Field(default_factory=dict)
    cap: UserCap | None = None
    obligations: tuple[Obligation, ...] = ()
    output_training: OutputTraining | None = None

    @field_validator("spdx")
    @classmethod
    def _spdx(cls, value: str) -> str:
        if not _SPDX_RE.match(value):
            raise ValueError(f"{value!r} is neither an SPDX id nor a LicenseRef-")
        return value

    @property
    def commercial(self) -> bool:
        """Whether commercial use is granted at all (it may still come with obligations)."""
        rule = self.uses.get(Use.COMMERCIAL)
        return rule is None or rule.verdict != "denied"

    @property
    def naming(self) -> Obligation | None:
        """The rule a derivative model's name must follow (`prefix`), if any."""
        return next((ob for ob in self.obligations if ob.kind == "naming"), None)

    @property
    def use_policy(self) -> Obligation | None:
        """The use policy or use restrictions that bind every use, if any."""
        return next(
            (ob for ob in self.obligations if ob.kind == "use-policy" and "use" in ob.on), None
        )

    @property
    def notices(self) -> list[str]:
        """The notices and attributions to ship with a copy."""
        return [ob.text for ob in self.obligations if ob.kind in ("notice", "attribution")]


@cache
def _table() -> dict[str, LicenseTerms]:
    data = tomllib.loads(_DATA.read_text(encoding="utf-8"))
    return {key: LicenseTerms(id=key, **entry) for key, entry in data.items()}


def _squash(text: str) -> str:
    lowered = re.sub(r"(?<=\d)_(?=\d)", ".", text.strip().lower())  # llama3_1 → llama3.1
    return re.sub(r"[^a-z0-9.+]", "", lowered)


def _url_key(text: str) -> str:
    key = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text.strip().lower())
    return key.removeprefix("www.").rstrip("/")


@cache
def _index() -> tuple[dict[str, str], tuple[tuple[str, str], ...]]:
    names: dict[str, str] = {}
    links: list[tuple[str, str]] = []
    for known in _table().values():
        for text in (known.id, known.spdx, known.name, *known.aliases):
            names.setdefault(_squash(text), known.id)
        if known.kind != "unknown":
            links.extend((_url_key(link), known.id) for link in (known.url, *known.urls))
    return names, tuple(sorted(links, key=lambda pair: -len(pair[0])))


def normalize_license(text: str | None) -> str | None:
    """The Hugging Face id of the license that `text` names, or None when owl knows none.

    `text` may be the id in any case or spelling (`Llama-3.1`, `llama3_1`), an SPDX id,
    the license's name, an alias, or a link to its text.
    """
    if not text or not text.strip():
        return None
    names, links = _index()
    if "://" in text or text.strip().lower().startswith("www."):
        key = _url_key(text)
        for known, license_id in links:
            if key == known or (key.startswith(known) and key[len(known)] in "/?#"):
                return license_id
        return None
    return names.get(_squash(text))


def license_key(text: str) -> str:
    """The id to file `text` under: its Hugging Face id when known, else itself, lower-cased."""
    return normalize_license(text) or text.strip().lower()


def terms(license_id: str | None) -> LicenseTerms | None:
    """The recorded terms of a license (by id, SPDX id, alias, name or link), or None."""
    key = normalize_license(license_id)
    return _table().get(key) if key else None


def all_terms() -> list[LicenseTerms]:
    """Every license owl has terms for."""
    return list(_table().values())


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
        elif use in _BINDS["service"]:
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


def _rank(verdict: LicenseVerdict) -> tuple[int, int]:
    return VERDICT_RANK[verdict.verdict], len(verdict.obligations)


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


def check_model(
    manifest: Manifest, *, store: Store, use: Use | str, monthly_users: int | None = None
) -> LicenseVerdict:
    """The verdict for a stored model: its license, and the terms it carries from its parents.

    When its license sources disagree, the license the user set decides, else the one whose
    verdict for this use is stricter (denied > review > conditional > allowed, then more
    obligations); the reasons say so. Each parent (looked up in the store, else by the license
    recorded when owl derived the model) adds its obligations, and the stricter verdict wins.
    """
    use = Use(use)
    return _model_verdict(manifest, store, use, monthly_users, frozenset())


def _model_verdict(
    manifest: Manifest,
    store: Store,
    use: Use,
    monthly_users: int | None,
    seen: frozenset[str],
) -> LicenseVerdict:
    seen = seen | {manifest.display_name}
    verdict = _own_verdict(manifest, use, monthly_users)
    for parent in manifest.parents:
        inherited, how = _parent_verdict(parent, store, use, monthly_users, seen)
        verdict = _inherit(verdict, inherited, parent, how)
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


def _stored(name: str, store: Store) -> Manifest | None:
    from owl.errors import OwlError
    from owl.store.ref import parse_name

    try:
        return store.find(parse_name(name))
    except OwlError:  # an invalid name, an unreadable manifest: use what the child recorded
        return None


def _parent_verdict(
    parent: Parent, store: Store, use: Use, monthly_users: int | None, seen: frozenset[str]
) -> tuple[LicenseVerdict, str]:
    stored = _stored(parent.name, store)
    usable = stored is not None and stored.display_name not in seen
    if usable and any(entry.digest == parent.digest for entry in stored.files):
        return _model_verdict(stored, store, use, monthly_users, seen), ""
    changed = " (the stored one has changed since)" if stored is not None else ""
    if parent.license:
        return check(parent.license, use=use, monthly_users=monthly_users), changed
    if usable:
        return _model_verdict(stored, store, use, monthly_users, seen), changed
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
