"""Where a model's license is written: GGUF metadata, its model card, the catalog.

Each reader returns the Hugging Face license id when it recognises the license (by id, SPDX
id, name or link), else the text as found, lower-cased, so that check() says `review` and
names it. resolve_license() settles what the sources say into one license, with notes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from owl.formats.card import card_metadata
from owl.licenses.check import describe_sources, group_sources, strictness
from owl.licenses.terms import license_key, normalize_license

# Hub ids that say "the terms are elsewhere": a license_name or link may say which.
_UNNAMED = frozenset({"other", "unknown"})
_LINK = re.compile(r"https?://[^\s)\]>\"'`]+")


def identify(
    license: str | None, *, name: str | None = None, links: Iterable[str | None] = ()
) -> str | None:
    """The license id that a Hub-style `license` (maybe `other`), its `name` and `links` name.

    A recognised `license` wins; for `other`, `unknown` or an unrecognised one, a recognised
    `name` or link decides. Nothing recognised: the text given, lower-cased (`license`, else
    `name`), or `other`/`unknown` as given, or None.
    """
    given = license.strip() if license and license.strip() else None
    known = normalize_license(given)
    if known is not None and known not in _UNNAMED:
        return known
    for hint in (name, *links):
        found = normalize_license(hint)
        if found is not None and found not in _UNNAMED:
            return found
    if given is not None and known is None:
        return given.lower()
    if name and name.strip():
        return name.strip().lower()
    return known


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def license_from_gguf(metadata: Mapping[str, Any]) -> str | None:
    """The license a GGUF file's metadata names (`general.license`, `.name`, `.link`)."""
    return identify(
        _text(metadata.get("general.license")),
        name=_text(metadata.get("general.license.name")),
        links=[_text(metadata.get("general.license.link"))],
    )


def license_from_card(text: str) -> str | None:
    """The license a model card's front matter names: `license`, `license_name`, `license_link`.

    For `other` or `unknown`, links in `extra_gated_prompt` count too (Falcon-180B's card
    says `unknown` and links its license there). A list of licenses gives the stricter.
    """
    data = card_metadata(text)
    name = _text(data.get("license_name"))
    links = [_text(data.get("license_link"))]
    links += _LINK.findall(_text(data.get("extra_gated_prompt")) or "")
    value = data.get("license")
    if isinstance(value, list):
        found = [identify(item, name=name, links=links) for item in value if _text(item)]
        named = [item for item in found if item is not None]
        return max(named, key=strictness) if named else None
    return identify(_text(value), name=name, links=links)


def license_from_catalog(model: str) -> str | None:
    """The license owl's catalog records for the model it calls `model`, if any."""
    from owl.catalog import find  # a stage above: imported only when asked

    entry = find(model)
    return identify(entry.license, name=entry.license_name) if entry is not None else None


def resolve_license(found: Mapping[str, str | None]) -> tuple[str | None, list[str]]:
    """One license from what each source says, and notes when they disagree.

    `found`: {"gguf": …, "card": …, "catalog": …, "alias": …, "user": …}, any missing or None.
    A license the user set wins (the disagreement is noted). Otherwise the stricter wins
    (check.strictness: an unrecognised license counts strictest, so that a person reads it).
    """
    grouped = group_sources(dict(found))
    if not grouped:
        return None, []
    if len(grouped) == 1:
        return next(iter(grouped)), []
    said = describe_sources(grouped)
    user = next((lid for lid, sources in grouped.items() if "user" in sources), None)
    if user is not None:
        return user, [f"license sources disagree ({said}): using {user}, as set"]
    chosen = max(grouped, key=strictness)
    return chosen, [f"license sources disagree ({said}): taking the stricter, {chosen}"]


def find_license(
    *,
    gguf_metadata: Mapping[str, Any] | None = None,
    card_text: str | None = None,
    catalog: str | None = None,
    alias: str | None = None,
    user: str | None = None,
) -> tuple[str | None, dict[str, str], list[str]]:
    """Everything a pull knows of a model's license → (license, license_sources, notes).

    The result fills a Manifest's `license` and `license_sources`; the notes are for the user.
    """
    found = {
        "gguf": license_from_gguf(gguf_metadata) if gguf_metadata is not None else None,
        "card": license_from_card(card_text) if card_text is not None else None,
        "catalog": catalog,
        "alias": alias,
        "user": user,
    }
    sources = {source: license_key(value) for source, value in found.items() if _text(value)}
    license, notes = resolve_license(sources)
    return license, sources, notes
