"""Constant folding of template expressions: the string an attribute name or item key always
is when a template builds it from pieces (`'__cla' ~ 'ss__'`, `['_', '_class_', '_']|join`),
so that hiding '__class__' in pieces does not hide it from the checks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from jinja2 import nodes

# String methods worth following when a template builds an attribute name from pieces.
_FOLDED_METHODS = {"lower", "upper", "strip", "lstrip", "rstrip", "replace", "join"}
_FOLDED_FILTERS = {"lower", "upper", "trim", "reverse", "join", "replace", "string"}
_MAX_FOLDED = 256  # longer strings are not attribute names


def constants(every: list[nodes.Node]) -> dict[str, Any]:
    """Names the template sets once, to a constant (`{% set n = '__cla' ~ 'ss__' %}`)."""
    stores = Counter(n.name for n in every if isinstance(n, nodes.Name) and n.ctx != "load")
    found: dict[str, Any] = {}
    for node in every:
        if isinstance(node, nodes.Assign) and isinstance(node.target, nodes.Name):
            if stores[node.target.name] == 1:
                folded = fold(node.node, found)
                if folded is not None:
                    found[node.target.name] = folded
    return found


def fold(node: nodes.Node, known: Mapping[str, Any], depth: int = 0) -> str | None:
    """The string an expression always evaluates to, when it is built only from constants
    (`'_' ~ '_class_' ~ '_'`, `['__cla', 'ss__']|join`, a name set once to one); None
    otherwise."""
    if depth > 50:
        return None
    folded: Any = None
    if isinstance(node, nodes.Name) and node.ctx == "load":
        folded = known.get(node.name)
    elif isinstance(node, nodes.Const):
        folded = node.value if isinstance(node.value, str | int) else None
    elif isinstance(node, nodes.Concat):
        parts = [fold(part, known, depth + 1) for part in node.nodes]
        folded = None if None in parts else "".join(str(part) for part in parts)
    elif isinstance(node, nodes.Add | nodes.Mul):
        left, right = fold(node.left, known, depth + 1), fold(node.right, known, depth + 1)
        if isinstance(node, nodes.Add) and isinstance(left, str) and isinstance(right, str):
            folded = left + right
        elif isinstance(node, nodes.Mul) and isinstance(left, str) and isinstance(right, int):
            folded = left * right if 0 <= right <= _MAX_FOLDED else None
    elif isinstance(node, nodes.List | nodes.Tuple):
        return None  # folded only as the value of join below
    elif isinstance(node, nodes.Filter) and node.name in _FOLDED_FILTERS and node.node:
        folded = _fold_call(node.name, node.node, node.args, known, depth)
    elif isinstance(node, nodes.Call) and isinstance(node.node, nodes.Getattr):
        if node.node.attr in _FOLDED_METHODS:
            folded = _fold_call(
                node.node.attr, node.node.node, node.args, known, depth, method=True
            )
    if isinstance(folded, str) and len(folded) > _MAX_FOLDED:
        return None
    return folded


def _fold_call(
    name: str,
    target: nodes.Node,
    args: list[nodes.Node],
    known: Mapping[str, Any],
    depth: int,
    *,
    method: bool = False,
) -> str | None:
    if name == "join":  # items|join(separator), or separator.join(items)
        items = (args[0] if args else None) if method else target
        if method:
            separator = fold(target, known, depth + 1)
        else:
            separator = fold(args[0], known, depth + 1) if args else ""
        if not isinstance(items, nodes.List | nodes.Tuple) or not isinstance(separator, str):
            return None
        pieces = [fold(item, known, depth + 1) for item in items.items]
        return None if None in pieces else separator.join(str(piece) for piece in pieces)
    text = fold(target, known, depth + 1)
    values = [fold(arg, known, depth + 1) for arg in args]
    if not isinstance(text, str) or not all(isinstance(value, str) for value in values):
        return None
    if name == "reverse":
        return text[::-1]
    if name in ("trim", "string"):
        return text.strip() if name == "trim" else text
    try:
        return getattr(text, name)(*values)
    except TypeError:  # arguments these methods do not take
        return None
