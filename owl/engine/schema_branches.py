"""Where a union's branches part: the first token that tells each from its siblings.

A union whose branches each begin differently (another kind of value, another first required
property, or another constant for it — a tool call's name) keeps only one branch open past
that token, so its width is not the sum of its branches' (owl/engine/schema_check.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Resolve = Callable[[Any], Any]  # a $ref to the schema it names

_KIND = {"string": "string", "integer": "number", "number": "number", "boolean": "boolean"}
_KIND |= {"null": "null", "array": "array"}


def lead(node: Any, resolve: Resolve, hops: int = 0) -> tuple[str, str | None, str | None] | None:
    """What a union branch begins with, where it tells the branch from its siblings:
    (kind, first required property, that property's constant) — or None."""
    if not isinstance(node, dict) or hops > 8:
        return None
    if (ref := node.get("$ref")) is not None:
        return lead(resolve(ref), resolve, hops + 1)
    kind = node.get("type")
    if "oneOf" in node or "anyOf" in node or isinstance(kind, list) or "enum" in node:
        return None
    if "const" in node:
        return (_kind_of(node["const"]), None, json.dumps(node["const"]))
    properties = node.get("properties")
    if kind in (None, "object") and isinstance(properties, dict):
        required = node.get("required")
        for key, value in properties.items():
            if isinstance(required, list) and key in required:
                return ("object", key, _constant(value, resolve, hops))
        return None
    if kind in (None, "array") and ("items" in node or "prefixItems" in node):
        return ("array", None, None)
    if kind in (None, "string") and "pattern" in node:
        return ("string", None, None)
    return (_KIND[kind], None, None) if isinstance(kind, str) and kind in _KIND else None


def _constant(node: Any, resolve: Resolve, hops: int) -> str | None:
    if isinstance(node, dict) and (ref := node.get("$ref")) is not None and hops < 8:
        return _constant(resolve(ref), resolve, hops + 1)
    if isinstance(node, dict) and "const" in node:
        return json.dumps(node["const"])
    if isinstance(node, dict) and isinstance(node.get("enum"), list) and len(node["enum"]) == 1:
        return json.dumps(node["enum"][0])
    return None


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return {type(None): "null", list: "array"}.get(type(value), "object")


def discriminated(leads: list[tuple[str, str | None, str | None] | None]) -> bool:
    """Whether the branches part at their first distinguishing token: each begins with a
    different kind of value, a different first property, or that property's different
    constant (a tool call's name), so no two stay open past it."""
    seen: dict[tuple[str, str | None], list[str | None]] = {}
    for lead in leads:
        if lead is None:
            return False
        seen.setdefault(lead[:2], []).append(lead[2])
    return all(
        len(consts) == 1 or (None not in consts and len(set(consts)) == len(consts))
        for consts in seen.values()
    )
