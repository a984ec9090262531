"""Built-in aliases (data file aliases.toml): names that resolve to a source."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from owl.store.ref import ModelName, ModelRef, RefKind, parse_name, parse_ref

_DATA = Path(__file__).with_name("aliases.toml")


@dataclass(frozen=True)
class Alias:
    name: ModelName
    source: ModelRef
    license: str | None
    description: str
    parameters: dict[str, Any]

    @property
    def offline(self) -> bool:
        """Whether pulling it needs no network (a model inside an installed package)."""
        return self.source.kind is RefKind.PACKAGE


@cache
def aliases() -> dict[ModelName, Alias]:
    """Every built-in alias by name."""
    table = tomllib.loads(_DATA.read_text())
    result = {}
    for key, entry in table.items():
        name = parse_name(key)
        result[name] = Alias(
            name=name,
            source=parse_ref(entry["source"]),
            license=entry.get("license"),
            description=entry.get("description", ""),
            parameters=dict(entry.get("parameters", {})),
        )
    return result


def find_alias(name: ModelName) -> Alias | None:
    return aliases().get(name)
