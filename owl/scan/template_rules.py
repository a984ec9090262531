"""The rules a chat template is checked by (templates.toml): which attribute names are Python
internals, which globals exploit payloads start from, and the conversations it is rendered on.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from owl.scan.findings import Severity

_RULES = Path(__file__).with_name("templates.toml")
_DUNDER = re.compile(r"__\w+__|_[A-Za-z]\w*__\w+")  # __class__, or a name-mangled private


@dataclass(frozen=True)
class TemplateRules:
    """templates.toml: the names that mark a hostile template, and the sample conversations."""

    internal_attributes: frozenset[str]
    jinja_gadgets: frozenset[str]
    flask_names: frozenset[str]
    attribute_arguments: dict[str, list[int]]
    conversations: list[dict[str, Any]]


@cache
def rules() -> TemplateRules:
    """The rules in templates.toml, read once."""
    with _RULES.open("rb") as table:
        data = tomllib.load(table)
    return TemplateRules(
        internal_attributes=frozenset(data["internal_attributes"]),
        jinja_gadgets=frozenset(data["jinja_gadgets"]),
        flask_names=frozenset(data["flask_names"]),
        attribute_arguments=data["attribute_arguments"],
        conversations=data["conversations"],
    )


def attribute_severity(name: str) -> Severity | None:
    """How bad reading attribute `name` is in a chat template; None when it is ordinary."""
    if _DUNDER.fullmatch(name) or name in rules().internal_attributes:
        return Severity.CRITICAL
    if name.startswith("_"):
        return Severity.HIGH
    return None
