"""Judging a pickle's imports against the allowlist in pickle_globals.toml.

An allowed global is no finding; a module, name or attribute the table lists as critical
(a way to run commands, evaluate code or reach os) is a critical finding; anything else
is a high one, since model files do not need it. A few globals are allowed only where a
given loader reads the pickle ([allowed_in.<loader>]: joblib's array placeholder means
something only to joblib.load). The opcode walker (pickle_ops) asks
`judge` about each import it resolves and records the ruling itself: this module knows
the table, not the walker.
"""

from __future__ import annotations

import _compat_pickle
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from owl.scan.findings import Severity

_TABLE = Path(__file__).with_name("pickle_globals.toml")
# What a module path or qualified name can look like to an import that can succeed.
IDENTIFIER_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Ruling:
    """What one import names (after Python 2's renames), and why it is a finding if it is."""

    name: str
    severity: Severity | None = None  # None: allowed
    check: str = ""
    reason: str = ""


@dataclass(frozen=True)
class Policy:
    """pickle_globals.toml: what is allowed, what is critical and why, what is high."""

    allowed: frozenset[str]
    allowed_in: dict[str, frozenset[str]]
    critical_modules: dict[str, str]
    critical_names: dict[str, str]
    critical_attributes: dict[str, str]
    high_names: dict[str, str]
    safe_suffixes: dict[str, str]


@cache
def policy() -> Policy:
    """The table in pickle_globals.toml, read once."""
    with _TABLE.open("rb") as table:
        data = tomllib.load(table)
    critical = data["critical"]
    return Policy(
        allowed=frozenset(data["allowed"]),
        allowed_in={loader: frozenset(names) for loader, names in data["allowed_in"].items()},
        critical_modules=critical["modules"],
        critical_names=critical["names"],
        critical_attributes=critical["attributes"],
        high_names=data["high"]["names"],
        safe_suffixes=data["safe_suffixes"],
    )


def judge(
    module: str,
    qualname: str,
    protocol: int,
    code_modules: tuple[str, ...],
    loader: str = "pickle",
) -> Ruling:
    """The ruling on one import read by `loader`: allowed (no severity), else a critical or
    high finding."""
    written = f"{module}.{qualname}"
    if protocol < 3:  # what pickle itself does for Python 2 names (fix_imports)
        if (module, qualname) in _compat_pickle.NAME_MAPPING:
            module, qualname = _compat_pickle.NAME_MAPPING[(module, qualname)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    full = f"{module}.{qualname}"
    table = policy()
    allowed = full in table.allowed or full in table.allowed_in.get(loader, ())
    if allowed or any(_under(module, code) for code in code_modules):
        return Ruling(full)
    label = full if full == written else f"{full} (written {written})"
    why = _critical_reason(module, qualname, table)
    if why:
        reason = f"imports {label}, which {why}"
        return Ruling(full, Severity.CRITICAL, "pickle.dangerous-global", reason)
    why = table.high_names.get(
        full, "model files do not need; loading the file imports it and may call it"
    )
    return Ruling(full, Severity.HIGH, "pickle.unknown-global", f"imports {label}, which {why}")


def names_an_import(module: str, qualname: str) -> bool:
    """Whether `module` and `qualname` are dotted identifiers, as importable names are."""
    return bool(IDENTIFIER_PATH.fullmatch(module) and IDENTIFIER_PATH.fullmatch(qualname))


def _under(module: str, parent: str) -> bool:
    return module == parent or module.startswith(parent + ".")


def _critical_reason(module: str, qualname: str, table: Policy) -> str | None:
    full = f"{module}.{qualname}"
    if full in table.critical_names:
        return table.critical_names[full]
    for parent, why in table.critical_modules.items():
        if _under(module, parent):
            return why
    # Protocol 4 resolves a dotted name attribute by attribute, so "os.system" under an
    # allowed module, "Path.write_text" or "load.__globals__" reach what the module name
    # alone does not show.
    attributes = qualname.split(".") if "." in qualname else []
    for attribute in attributes:
        if attribute.startswith("__") and attribute.endswith("__"):
            return (
                f"reaches the attribute {attribute}, a known way from a harmless object "
                "to os or eval"
            )
        if attribute in table.critical_modules:
            return table.critical_modules[attribute]
        if attribute in table.critical_attributes:
            return table.critical_attributes[attribute]
    return None
