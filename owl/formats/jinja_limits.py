"""Limits on what a chat template's values may cost: size guards and the render budget.

Each guard estimates, before an operation runs, how long its result will be (`*`, `**`,
`+`, `%`, str.format, the str methods that take a width or a replacement, the filters that
turn a value into text) and raises ValueTooLarge past MAX_VALUE_CHARS; `charge` takes
what an operation made from the budget that render_bounded (jinja_sandbox) sets for one
render. The estimates count text without building it (`text_size`), so a guard costs far
less than the copy it refuses. jinja_sandbox wires these into the environment.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from jinja2.exceptions import SecurityError
from jinja2.sandbox import MAX_RANGE
from jinja2.utils import Namespace

# No value a template makes may be longer: above any prompt a context window holds
# (a million tokens is about 4 MiB of text), far below what hurts memory.
MAX_VALUE_CHARS = 8 * 1024 * 1024
# The longest range() a template may loop over, jinja2's own sandbox limit.
MAX_LOOP_ITEMS = MAX_RANGE
# Chat templates count messages and indent JSON; no real one needs a number this large.
MAX_INT_BITS = 4096


class ValueTooLarge(SecurityError):
    """A template operation past a limit: a value longer than MAX_VALUE_CHARS, a render's
    budget spent, a loop too long. `limit` names which, for a person to read."""

    def __init__(self, message: str, *, limit: str = "value size") -> None:
        super().__init__(message)
        self.limit = limit


# What a render may still make, [left, all], while render_bounded runs.
render_budget: ContextVar[list[int] | None] = ContextVar("owl_template_budget", default=None)
SIZED = (str, bytes, list, tuple, dict, set, frozenset)


def charge(size: int) -> None:
    """Take `size` characters or items from the budget of the render running, if any."""
    budget = render_budget.get()
    if budget is not None:
        budget[0] -= size
        if budget[0] < 0:
            raise ValueTooLarge(
                f"the template made more than {budget[1]:,} characters and items in all",
                limit="allocation budget",
            )


def bounded_range(*args: int) -> range:
    """range() for templates: at most MAX_LOOP_ITEMS items (jinja2's sandbox limit)."""
    items = range(*args)
    try:
        length = len(items)
    except OverflowError:  # more items than an index holds
        length = MAX_LOOP_ITEMS + 1
    if length > MAX_LOOP_ITEMS:
        raise ValueTooLarge(
            f"range() of more than {MAX_LOOP_ITEMS:,} items", limit=f"{MAX_LOOP_ITEMS:,}-step loop"
        )
    return items


def require(size: int, what: str) -> None:
    """Refuse an operation whose result would pass MAX_VALUE_CHARS; charge it otherwise."""
    if size > MAX_VALUE_CHARS:
        raise ValueTooLarge(f"{what} would make more than {MAX_VALUE_CHARS:,} characters")
    charge(size)


_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))


def _children(item: Any) -> list[Any] | None:
    """What a container prints inside it; None for anything that is not a container."""
    if isinstance(item, Namespace):
        item = item._Namespace__attrs
    if isinstance(item, dict):
        return [*item.keys(), *item.values()]
    if isinstance(item, (list, tuple, set, frozenset, *_VIEWS)):
        return list(item)
    return None


def _leaf_size(item: Any) -> int:
    if isinstance(item, str | bytes):
        return len(item) + 3  # quotes in a repr
    if isinstance(item, int) and not isinstance(item, bool):
        return item.bit_length() // 3 + 2  # decimal digits
    return 32  # floats, None and the fixed repr of any other object


def text_size(value: Any, *, indent: int = 0, separator: int = 2) -> int:
    """About how long str(value) is, counted without building it; exact enough to stop
    what would pass MAX_VALUE_CHARS.

    A shared reference counts each time it prints, which is what makes `[x, x]` nested
    forty deep a terabyte of text; each object is still visited once (per depth, with an
    indent), so the count itself is quick.
    """
    if isinstance(value, str):
        return len(value)
    sizes: dict[tuple[int, int], int] = {}
    visiting: set[int] = set()  # containers being counted: a reference back is a cycle
    stack = [(value, 0)]
    while stack:
        item, depth = stack[-1]
        key = (id(item), depth if indent else 0)
        children = None if key in sizes else _children(item)
        if children is None:
            sizes.setdefault(key, _leaf_size(item))
            stack.pop()
            continue
        if id(item) not in visiting:
            visiting.add(id(item))
            below = depth + 1 if indent else 0
            pending = [
                (child, depth + 1)
                for child in children
                if (id(child), below) not in sizes and id(child) not in visiting
            ]
            if pending:
                stack.extend(pending)
                continue
        stack.pop()
        visiting.discard(id(item))
        below = depth + 1 if indent else 0
        size = 2 + 12 * isinstance(item, Namespace)
        size += len(children) * (separator + indent * (depth + 1))
        size += sum(sizes.get((id(child), below), 5) for child in children)
        if size > MAX_VALUE_CHARS:
            return size  # whatever holds it prints at least as much
        sizes[key] = size
    return sizes[(id(value), 0)]


def _number(digits: str) -> int:
    # int() of thousands of digits raises; anything this long is over the limit anyway.
    return int(digits) if len(digits) <= 9 else MAX_VALUE_CHARS + 1


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _field_size(widths: list[str], values: list[Any]) -> int:
    largest = max((text_size(value) for value in values), default=0)
    stars = max((v for v in values if isinstance(v, int) and not isinstance(v, bool)), default=0)
    width = max((stars if w in ("*", "{") else _number(w) for w in widths if w), default=0)
    return max(width, largest)


def _format_values(values: Any) -> list[Any]:
    if isinstance(values, tuple):
        return list(values)
    if isinstance(values, Mapping):
        return list(values.values())
    return [values]


def _check_percent(fmt: str, values: Any) -> None:
    """`fmt % values`: each conversion is at most its width or its longest value."""
    arguments = _format_values(values)
    total = len(fmt)
    for match in _PERCENT_SPEC.finditer(fmt):
        if match.group(3) != "%":
            total += _field_size([match.group(1), match.group(2)], arguments)
        require(total, "'%' formatting")


def check_format(fmt: str, values: list[Any]) -> None:
    """`fmt.format(...)`: each field is at most its width or its longest argument."""
    total = len(fmt)
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is not None:
            widths = re.findall(r"\d+", spec or "") + (["{"] if "{" in (spec or "") else [])
            total += _field_size(widths, values)
            require(total, "str.format")


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Checks `left operator right` for the operators the environment intercepts."""
    sequences = str | bytes | list | tuple
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise ValueTooLarge(
                    f"multiplying makes a number over {MAX_INT_BITS} bits", limit="number size"
                )
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, sequences) and isinstance(count, int):
                require(len(seq) * max(count, 0), f"repeating a {type(seq).__name__}")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if left.bit_length() * right > MAX_INT_BITS:
                raise ValueTooLarge(
                    f"'**' makes a number over {MAX_INT_BITS} bits", limit="number size"
                )
    elif operator == "+":
        if isinstance(left, sequences) and isinstance(right, sequences):
            require(len(left) + len(right), f"adding two {type(left).__name__}s")
    elif operator == "%" and isinstance(left, str | bytes):
        _check_percent(left if isinstance(left, str) else left.decode("latin-1"), right)


def check_text_method(text: str | bytes, name: str, args: tuple, kwargs: dict) -> tuple:
    """Checks a call of a str (or bytes) method; returns its arguments, iterables listed."""
    first = args[0] if args else None
    kind = str if isinstance(text, str) else bytes
    if name in ("center", "ljust", "rjust", "zfill") and isinstance(first, int):
        require(first, f"str.{name}")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            tabs = text.count("\t" if kind is str else b"\t")
            require(len(text) + tabs * max(size, 0), "str.expandtabs")
    elif name == "replace" and len(args) >= 2 and all(isinstance(a, kind) for a in args[:2]):
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        times = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        require(len(text) + times * max(len(new) - len(old), 0), "str.replace")
    elif name == "join" and args:
        parts = list(args[0])
        lengths = sum(len(part) for part in parts if isinstance(part, str | bytes))
        require(lengths + len(text) * max(len(parts) - 1, 0), "str.join")
        return (parts, *args[1:])
    elif name == "translate" and isinstance(first, dict):
        longest = max((len(v) for v in first.values() if isinstance(v, str | bytes)), default=1)
        require(len(text) * max(longest, 1), "str.translate")
    return args


# How many times longer than its input's text a filter's output can be.
_TEXT_FILTERS = {
    "capitalize": 3,
    "e": 6,
    "escape": 6,
    "forceescape": 6,
    "lower": 3,
    "pprint": 4,
    "safe": 1,
    "string": 4,
    "striptags": 1,
    "title": 3,
    "trim": 1,
    "truncate": 1,
    "upper": 3,
    "urlencode": 12,
    "urlize": 10,
    "wordcount": 1,
    "wordwrap": 2,
    "xmlattr": 6,
}


def _argument(rest: tuple, kwargs: dict, index: int, name: str, default: Any) -> Any:
    return rest[index] if len(rest) > index else kwargs.get(name, default)


def _check_filter(name: str, value: Any, rest: tuple, kwargs: dict) -> Any:
    """Checks a filter call on `value`; returns the value, an iterable made a list."""
    if name in _TEXT_FILTERS:
        require(text_size(value) * _TEXT_FILTERS[name], f"the {name} filter")
    elif name == "center":
        width = _argument(rest, kwargs, 0, "width", 80)
        require(max(text_size(value), width if isinstance(width, int) else 0), "center")
    elif name == "indent":
        width = _argument(rest, kwargs, 0, "width", 4)
        width = width if isinstance(width, int) else len(str(width))
        size = text_size(value)
        lines = value.count("\n") + 1 if isinstance(value, str) else size + 1
        require(size + lines * max(width, 0), "the indent filter")
    elif name == "format":
        require(text_size(value), "the format filter")
        _check_percent(str(value), kwargs or rest)
    elif name == "replace":
        require(text_size(value), "the replace filter")
        old = str(_argument(rest, kwargs, 0, "old", ""))
        new = str(_argument(rest, kwargs, 1, "new", ""))
        count = _argument(rest, kwargs, 2, "count", None)
        check_text_method(str(value), "replace", (old, new, -1 if count is None else count), {})
    elif name == "join":
        parts = value if isinstance(value, str) else list(value)
        separator = len(str(_argument(rest, kwargs, 0, "d", "")))
        size = len(parts) if isinstance(parts, str) else sum(text_size(p) for p in parts)
        require(size + separator * max(len(parts) - 1, 0), "the join filter")
        return parts
    elif name in ("batch", "slice"):
        count = _argument(rest, kwargs, 0, "linecount" if name == "batch" else "slices", 0)
        if isinstance(count, int):
            require(count, f"the {name} filter")
    elif name == "sum":
        # Summing lists concatenates them: never more items than their text has characters.
        items = list(value)
        require(text_size([_argument(rest, kwargs, 1, "start", 0), items]), "the sum filter")
        return items
    return value


def guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """`func`, the filter called `name`, checked before it runs and charged what it makes."""
    # Filters marked pass_context/pass_environment get that argument before the value.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        head, value, rest = args[:offset], args[offset], args[offset + 1 :]
        result = func(*head, _check_filter(name, value, rest, kwargs), *rest, **kwargs)
        if isinstance(result, SIZED) and result is not value:
            charge(len(result))
        return result

    return guarded
