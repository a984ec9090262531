"""check_schema: a request's JSON schema walked as the converter reads it, against the
bounds of owl/engine/schema_limits.py (which says why each exists)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from owl.engine.schema_branches import discriminated, lead
from owl.engine.schema_limits import (
    MAX_ALTERNATIVES,
    MAX_GRAMMAR_CHARS,
    MAX_JSON_DEPTH,
    MAX_NESTING,
    MAX_OPTIONAL_PROPERTIES,
    MAX_OPTIONAL_PROPERTY_WORK,
    MAX_OPTIONAL_REPEATS,
    MAX_REPEATS,
    MAX_SCHEMA_CHARS,
    shown,
    too_long,
    too_wide,
)
from owl.engine.schema_pattern import pattern_cost
from owl.errors import InvalidPrompt

_RULE_CHARS = re.compile(r"[^a-zA-Z0-9-]+")  # what the converter replaces in rule names
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_PRIMITIVES = {"boolean", "number", "integer", "string", "null"}


def check_schema(schema: Any) -> None:
    """Raise InvalidPrompt, naming the keyword, where and the limit, unless `schema` is within
    every bound above; the walk follows the converter's reading of each schema."""
    if not isinstance(schema, dict):
        raise InvalidPrompt(f"a JSON schema is a JSON object, not {type(schema).__name__}")
    _check_json(schema)
    if len(json.dumps(schema)) > MAX_SCHEMA_CHARS:
        raise too_long()
    _Walk(schema).node(schema, "$", "", level=1, opened=0)


def _check_json(schema: dict[str, Any]) -> None:
    """Its depth, without recursion, and its size, stopping as soon as it is too big: every
    value takes at least two characters of JSON (itself, and a comma or bracket)."""
    stack: list[tuple[Any, int]] = [(schema, 1)]
    seen = 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_SCHEMA_CHARS // 2:
            raise too_long()
        if depth > MAX_JSON_DEPTH:
            raise InvalidPrompt(
                f"the JSON schema nests deeper than owl's limit of {MAX_JSON_DEPTH} levels; "
                "flatten it"
            )
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)


@dataclass(frozen=True)
class _Shape:
    first: int  # alternatives open at the schema's first token
    width: int  # the most open at any one token within it


_LEAF = _Shape(1, 1)


def _child(name: str, part: str) -> str:
    return f"{name}-{part}" if name else part


def _key(key: str) -> str:
    return f".{key}" if _IDENTIFIER.fullmatch(key) else f"[{json.dumps(key)[:80]}]"


class _Walk:
    def __init__(self, root: dict[str, Any]) -> None:
        self.root = root
        self.chars = 0  # an estimate, from below, of the grammar's size
        self.optional_work = 0
        self.shapes: dict[str, _Shape] = {}
        self.resolving: dict[str, int] = {}  # $ref → the `opened` it was entered with

    def spend(self, chars: int, path: str) -> None:
        self.chars += chars
        if self.chars > MAX_GRAMMAR_CHARS:
            raise InvalidPrompt(
                f"the grammar for this JSON schema would be over owl's limit of "
                f"{MAX_GRAMMAR_CHARS} characters (reached at {shown(path)}); lower its bounds "
                "(minItems, maxItems, minLength, maxLength) or simplify it"
            )

    def node(self, node: Any, path: str, name: str, *, level: int, opened: int) -> _Shape:
        """The converter's visit(), as far as sizes go; `opened` counts the values begun
        ({, [) between the root and here, which a recursive $ref must pass through."""
        if not isinstance(node, dict):
            return _LEAF  # the converter refuses it with its own message
        if level > MAX_NESTING:
            raise InvalidPrompt(
                f"the JSON schema nests deeper than owl's limit of {MAX_NESTING} levels at "
                f"{shown(path)}; flatten it"
            )
        rule = _RULE_CHARS.sub("-", name) or "root"
        self.spend(len(rule) + 8, path)
        self.bounds(node, path, rule)
        kind = node.get("type")
        if (ref := node.get("$ref")) is not None:
            return self.ref(ref, path, level=level, opened=opened)
        if "oneOf" in node or "anyOf" in node:
            return self.branches(node, path, name, level, opened)
        if isinstance(kind, list):
            return self.leaves("type", path, len(kind))
        if "const" in node:
            self.spend(len(json.dumps(node["const"])), path)
            return _LEAF
        if "enum" in node:
            values = node["enum"]
            if not isinstance(values, list):
                return _LEAF
            self.spend(sum(len(json.dumps(v)) + 3 for v in values), path)
            return self.leaves("enum", path, len(values))
        extra = node.get("additionalProperties")
        if kind in (None, "object") and (
            "properties" in node or ("additionalProperties" in node and extra is not True)
        ):
            properties = node.get("properties", {})
            required = _as_set(node.get("required", []))
            if not isinstance(properties, dict) or required is None:
                return _LEAF  # the converter refuses it with its own message
            items = list(properties.items())
            return self.object(items, required, extra, path, name, level, opened)
        if kind in (None, "object") and "allOf" in node:
            return self.all_of(node["allOf"], path, name, level, opened)
        if kind in (None, "array") and ("items" in node or "prefixItems" in node):
            return self.array(
                node.get("items") or node.get("prefixItems"), path, name, level, opened
            )
        if kind in (None, "string") and isinstance(node.get("pattern"), str):
            return self.pattern(node["pattern"], path, rule)
        return _LEAF

    def branches(
        self, node: dict[str, Any], path: str, name: str, level: int, opened: int
    ) -> _Shape:
        keyword = "oneOf" if node.get("oneOf") else "anyOf"
        branches = node.get("oneOf") or node.get("anyOf")
        if not isinstance(branches, list):
            return _LEAF  # the converter refuses it, or it has no branches to visit
        shapes = [
            self.node(
                branch,
                f"{path}.{keyword}[{i}]",
                f"{name}{'-' if name else 'alternative-'}{i}",
                level=level + 1,
                opened=opened,
            )
            for i, branch in enumerate(branches)
        ]
        return self.union(keyword, path, branches, shapes)

    def array(self, items: Any, path: str, name: str, level: int, opened: int) -> _Shape:
        if not isinstance(items, list):  # one schema for every item
            child = _child(name, "item")
            shape = self.node(items, f"{path}.items", child, level=level + 1, opened=opened + 1)
            return _Shape(1, shape.width)
        shapes = [
            self.node(
                item,
                f"{path}.items[{i}]",
                _child(name, f"tuple-{i}"),
                level=level + 1,
                opened=opened + 1,
            )
            for i, item in enumerate(items)
        ]
        return _Shape(1, max((s.width for s in shapes), default=1))

    def pattern(self, pattern: str, path: str, rule: str) -> _Shape:
        cost = pattern_cost(pattern, where=shown(path), rule=rule)
        if cost is None:
            return _LEAF  # the converter refuses it with its own message
        self.spend(cost.chars, path)
        width = cost.alternatives * 2**cost.optionals
        if width > MAX_ALTERNATIVES:
            raise too_wide("pattern", path, width)
        return _Shape(cost.alternatives, width)

    def bounds(self, node: dict[str, Any], path: str, rule: str) -> None:
        """Every repetition bound, wherever it stands (one the converter would ignore is
        refused all the same: simpler to state than its precedence), counted in the size
        only where the converter repeats by it."""
        kind = node.get("type")
        text = kind == "string" and "pattern" not in node
        self.repetition(node, path, "minLength", "maxLength", item_chars=4 if text else None)
        items = node.get("items") or node.get("prefixItems")
        listed = kind in (None, "array") and items is not None and not isinstance(items, list)
        item_rule = rule + "-item"
        if isinstance(items, dict) and len(items) == 1 and str(items.get("type")) in _PRIMITIVES:
            item_rule = items["type"]  # the converter's shared primitive rule
        item_chars = len(item_rule) + 10 if listed else None
        self.repetition(node, path, "minItems", "maxItems", item_chars=item_chars)

    def repetition(
        self,
        node: dict[str, Any],
        path: str,
        low_key: str,
        high_key: str,
        *,
        item_chars: int | None,
    ) -> None:
        low, high = _count(node, low_key, path), _count(node, high_key, path)
        if low is None and high is None:
            return
        least = low or 0
        if least > MAX_REPEATS:
            raise InvalidPrompt(
                f"{low_key} {least} at {shown(path)} is over owl's limit of {MAX_REPEATS}; lower it"
            )
        spare = 0
        if high is not None:
            if high < least:
                raise InvalidPrompt(
                    f"{low_key} {least} at {shown(path)} is over its {high_key} {high}, so "
                    f"nothing can match; lower {low_key} or raise {high_key}"
                )
            spare = high - least
            if spare > MAX_OPTIONAL_REPEATS:
                limit = least + MAX_OPTIONAL_REPEATS
                given = f" ({low_key} + {MAX_OPTIONAL_REPEATS})" if least else ""
                raise InvalidPrompt(
                    f"{high_key} {high} at {shown(path)} is over owl's limit of {limit}{given}: "
                    "each optional repetition nests one level deeper in llama.cpp's grammar "
                    "parser; lower it"
                )
        if item_chars is not None:
            self.spend(least * (item_chars + 1) + spare * (item_chars + 4), path)

    def ref(self, ref: Any, path: str, *, level: int, opened: int) -> _Shape:
        target = self.resolve(ref)
        if target is None:
            return _LEAF  # the converter refuses it with its own message
        if ref in self.resolving:
            if self.resolving[ref] == opened:
                raise InvalidPrompt(
                    f"$ref {str(ref)[:100]!r} at {shown(path)} reaches itself before any value "
                    "begins (left recursion, which llama.cpp grammars cannot hold); recurse "
                    "only within properties or items"
                )
            return _LEAF
        if ref not in self.shapes:  # the converter, too, builds each referenced rule once
            self.resolving[ref] = opened
            name = ref.split("/")[-1]
            where = shown(f"{path} → {ref}")
            self.shapes[ref] = self.node(target, where, name, level=level + 1, opened=opened)
            del self.resolving[ref]
        return self.shapes[ref]

    def resolve(self, ref: Any) -> Any:
        """What the converter's resolve_refs finds for `ref`, or None where it fails."""
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return None
        target: Any = self.root
        for part in ref.split("#")[-1].split("/")[1:]:
            if not isinstance(target, dict) or part not in target:
                return None
            target = target[part]
        return target

    def union(self, keyword: str, path: str, branches: list[Any], shapes: list[_Shape]) -> _Shape:
        first = sum(s.first for s in shapes)
        if discriminated([lead(b, self.resolve) for b in branches]):
            width = max([first, *(s.width for s in shapes)])  # one branch lives past the start
        else:
            width = max(first, sum(s.width for s in shapes))
        if width > MAX_ALTERNATIVES:
            raise too_wide(keyword, path, width)
        return _Shape(first, width)

    def leaves(self, keyword: str, path: str, count: int) -> _Shape:
        if count > MAX_ALTERNATIVES:
            raise too_wide(keyword, path, count)
        return _Shape(count, count)

    def object(
        self,
        items: list[tuple[str, Any]],
        required: set[str],
        extra: Any,
        path: str,
        name: str,
        level: int,
        opened: int,
    ) -> _Shape:
        widths = [1]
        for key, value in items:
            self.spend(2 * len(json.dumps(key)) + 20, path)
            where = f"{path}.properties" + _key(key)
            shape = self.node(value, where, _child(name, key), level=level + 1, opened=opened + 1)
            widths.append(shape.width)
        optional = sum(1 for key, _ in items if key not in required)
        if extra is True or isinstance(extra, dict):
            where = f"{path}.additionalProperties"
            value = extra if isinstance(extra, dict) else {}
            child = _child(name, "additional-value")
            widths.append(self.node(value, where, child, level=level + 1, opened=opened + 1).width)
            optional += 1
        self.optional(optional, path)
        return _Shape(1, max([optional, *widths]))

    def all_of(self, parts: Any, path: str, name: str, level: int, opened: int) -> _Shape:
        """The converter merges the properties of each part (of each anyOf of a part,
        optional), into one object; a part given by $ref is read again at every use."""
        if not isinstance(parts, list):
            return _LEAF
        items: list[tuple[str, Any]] = []
        required: set[str] = set()
        for part in parts:
            alternatives = part.get("anyOf") if isinstance(part, dict) else None
            for each, is_required in (
                [(p, False) for p in alternatives]
                if isinstance(alternatives, list)
                else [(part, True)]
            ):
                if isinstance(each, dict) and "$ref" in each:
                    each = self.resolve(each["$ref"])
                properties = each.get("properties") if isinstance(each, dict) else None
                if isinstance(properties, dict):
                    items.extend(properties.items())
                    required |= set(properties) if is_required else set()
        return self.object(items, required, None, f"{path}.allOf", name, level, opened)

    def optional(self, count: int, path: str) -> None:
        if count > MAX_OPTIONAL_PROPERTIES:
            raise InvalidPrompt(
                f"properties at {shown(path)} has {count} optional properties, over owl's "
                f"limit of {MAX_OPTIONAL_PROPERTIES} (the grammar builder's work grows with the "
                "square of their number); list more of them in required, or split the object"
            )
        self.optional_work += count * count
        if self.optional_work > MAX_OPTIONAL_PROPERTY_WORK:
            raise InvalidPrompt(
                f"properties at {shown(path)} takes the schema's optional properties over "
                f"owl's limit (the sum over its objects of the square of each one's count is "
                f"{self.optional_work}, limit {MAX_OPTIONAL_PROPERTY_WORK}); list more of them "
                "in required"
            )


def _as_set(required: Any) -> set[Any] | None:
    """`required` as the converter reads it (set(...)), or None where that fails."""
    try:
        return set(required)
    except TypeError:
        return None


def _count(node: dict[str, Any], key: str, path: str) -> int | None:
    value = node.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidPrompt(
            f"{key} at {shown(path)} must be a non-negative integer, not {str(value)[:40]!r}"
        )
    return value
