"""License terms: the data model of terms.toml, and finding a license's terms by any name.

A license is recorded once, under its Hugging Face id, with what it asks of you
(obligations, and for which uses they bind), the uses it denies or leaves to a person, a
user cap, and what it says of training on its outputs. normalize_license() recognises a
license by id, SPDX id, name, alias or link; terms() returns its LicenseTerms.
Judging a use against these terms is check.py's work.
"""

from __future__ import annotations

import re
import tomllib
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

_DATA = Path(__file__).with_name("terms.toml")


class Use(StrEnum):
    """What someone means to do with a model."""

    PERSONAL = "personal"  # your own use; nothing shared, no money involved
    RESEARCH = "research"  # non-commercial research; results may be published
    COMMERCIAL = "commercial"  # for commercial advantage: a product, a business's own use
    HOSTED = "hosted"  # serving it to other people over a network (an API, an app)


# Which uses an obligation's `on` binds. Sharing binds commercial use but not hosting: a
# product may ship the weights; a hosted service does not hand them out.
BINDS: dict[str, frozenset[Use]] = {
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
    unknown = [when for when in whens if when not in BINDS]
    if unknown or not whens:
        raise ValueError(f"`on` must be among {sorted(BINDS)}, not {unknown or whens}")
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
        return any(use in BINDS[when] for when in self.on)

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
        return any(use in BINDS[when] for when in self.on)


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
