"""The one Jinja environment for chat templates: jinja2's immutable sandbox, with limits.

A chat template is code shipped inside an untrusted model file (CVE-2024-34359 ran
`cycler.__init__.__globals__.os.popen(...)` through an unsandboxed one). jinja2's
ImmutableSandboxedEnvironment refuses private attributes and mutation, but it does not
bound what a template costs. This environment adds two things:

- size guards: each operation that can make a value much longer than its inputs (`*`,
  `**`, `+`, `%`, `~`, str.format, the str methods that take a width or a replacement,
  the filters that turn a value into text, printing a nested structure, joining a macro's
  or a block's output) estimates the size of its result before it runs and raises
  ValueTooLarge past MAX_VALUE_CHARS, so no single step can allocate gigabytes;
- render_bounded: a deadline that holds inside loops that print nothing, a bound on the
  length of the output, and a budget for all the text and items a render makes: every
  operation that copies a string or a list (the guarded ones above, string and list
  methods, filters, slices) is charged what it makes, so a loop that keeps allocating
  large values stops long before its deadline.

What cannot be bounded in process: one C-level call whose cost is exponential in a
structure of shared references (hashing or comparing deeply shared tuples), and
allocations the charges undercount (each item of a list is charged as one character).
Only a separate process under OS limits bounds those.
"""

from __future__ import annotations

import functools
import json
import re
import string
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.ext import Extension, loopcontrols
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from owl.errors import TemplateError

# No value a template makes may be longer: above any prompt a context window holds
# (a million tokens is about 4 MiB of text), far below what hurts memory.
MAX_VALUE_CHARS = 8 * 1024 * 1024
# Chat templates count messages and indent JSON; no real one needs a number this large.
MAX_INT_BITS = 4096


class RenderLimitExceeded(TemplateError):
    """A template that ran past its time, output or value-size limit."""


class ValueTooLarge(SecurityError):
    """A single template operation that would make a value longer than MAX_VALUE_CHARS."""


# What a render may still make, [left, all], while render_bounded runs.
_budget: ContextVar[list[int] | None] = ContextVar("owl_template_budget", default=None)
_SIZED = (str, bytes, list, tuple, dict, set, frozenset)
# Methods of text, lists and dicts that look into them without copying them.
_LOOKUPS = frozenset(
    "startswith endswith find rfind index rindex count get keys values items".split()
)


def _charge(size: int) -> None:
    budget = _budget.get()
    if budget is not None:
        budget[0] -= size
        if budget[0] < 0:
            raise ValueTooLarge(
                f"the template made more than {budget[1]:,} characters and items in all"
            )


def _require(size: int, what: str) -> None:
    """Refuse an operation whose result would pass MAX_VALUE_CHARS; charge it otherwise."""
    if size > MAX_VALUE_CHARS:
        raise ValueTooLarge(f"{what} would make more than {MAX_VALUE_CHARS:,} characters")
    _charge(size)


_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_SCALARS = (str, int, float, type(None))


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


def _text_size(value: Any, *, indent: int = 0, separator: int = 2) -> int:
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
    largest = max((_text_size(value) for value in values), default=0)
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
        _require(total, "'%' formatting")


def _check_format(fmt: str, values: list[Any]) -> None:
    """`fmt.format(...)`: each field is at most its width or its longest argument."""
    total = len(fmt)
    for _literal, field, spec, _conversion in string.Formatter().parse(fmt):
        if field is not None:
            widths = re.findall(r"\d+", spec or "") + (["{"] if "{" in (spec or "") else [])
            total += _field_size(widths, values)
            _require(total, "str.format")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    sequences = str | bytes | list | tuple
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise ValueTooLarge(f"multiplying makes a number over {MAX_INT_BITS} bits")
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, sequences) and isinstance(count, int):
                _require(len(seq) * max(count, 0), f"repeating a {type(seq).__name__}")
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            if left.bit_length() * right > MAX_INT_BITS:
                raise ValueTooLarge(f"'**' makes a number over {MAX_INT_BITS} bits")
    elif operator == "+":
        if isinstance(left, sequences) and isinstance(right, sequences):
            _require(len(left) + len(right), f"adding two {type(left).__name__}s")
    elif operator == "%" and isinstance(left, str | bytes):
        _check_percent(left if isinstance(left, str) else left.decode("latin-1"), right)


def _check_text_method(text: str | bytes, name: str, args: tuple, kwargs: dict) -> tuple:
    """Checks a call of a str (or bytes) method; returns its arguments, iterables listed."""
    first = args[0] if args else None
    kind = str if isinstance(text, str) else bytes
    if name in ("center", "ljust", "rjust", "zfill") and isinstance(first, int):
        _require(first, f"str.{name}")
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            tabs = text.count("\t" if kind is str else b"\t")
            _require(len(text) + tabs * max(size, 0), "str.expandtabs")
    elif name == "replace" and len(args) >= 2 and all(isinstance(a, kind) for a in args[:2]):
        old, new = args[0], args[1]
        count = args[2] if len(args) > 2 else kwargs.get("count", -1)
        times = text.count(old) if old else len(text) + 1
        if isinstance(count, int) and count >= 0:
            times = min(times, count)
        _require(len(text) + times * max(len(new) - len(old), 0), "str.replace")
    elif name == "join" and args:
        parts = list(args[0])
        lengths = sum(len(part) for part in parts if isinstance(part, str | bytes))
        _require(lengths + len(text) * max(len(parts) - 1, 0), "str.join")
        return (parts, *args[1:])
    elif name == "translate" and isinstance(first, dict):
        longest = max((len(v) for v in first.values() if isinstance(v, str | bytes)), default=1)
        _require(len(text) * max(longest, 1), "str.translate")
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
        _require(_text_size(value) * _TEXT_FILTERS[name], f"the {name} filter")
    elif name == "center":
        width = _argument(rest, kwargs, 0, "width", 80)
        _require(max(_text_size(value), width if isinstance(width, int) else 0), "center")
    elif name == "indent":
        width = _argument(rest, kwargs, 0, "width", 4)
        width = width if isinstance(width, int) else len(str(width))
        size = _text_size(value)
        lines = value.count("\n") + 1 if isinstance(value, str) else size + 1
        _require(size + lines * max(width, 0), "the indent filter")
    elif name == "format":
        _require(_text_size(value), "the format filter")
        _check_percent(str(value), kwargs or rest)
    elif name == "replace":
        _require(_text_size(value), "the replace filter")
        old = str(_argument(rest, kwargs, 0, "old", ""))
        new = str(_argument(rest, kwargs, 1, "new", ""))
        count = _argument(rest, kwargs, 2, "count", None)
        _check_text_method(str(value), "replace", (old, new, -1 if count is None else count), {})
    elif name == "join":
        parts = value if isinstance(value, str) else list(value)
        separator = len(str(_argument(rest, kwargs, 0, "d", "")))
        size = len(parts) if isinstance(parts, str) else sum(_text_size(p) for p in parts)
        _require(size + separator * max(len(parts) - 1, 0), "the join filter")
        return parts
    elif name in ("batch", "slice"):
        count = _argument(rest, kwargs, 0, "linecount" if name == "batch" else "slices", 0)
        if isinstance(count, int):
            _require(count, f"the {name} filter")
    elif name == "sum":
        # Summing lists concatenates them: never more items than their text has characters.
        items = list(value)
        _require(_text_size([_argument(rest, kwargs, 1, "start", 0), items]), "the sum filter")
        return items
    return value


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context/pass_environment get that argument before the value.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        head, value, rest = args[:offset], args[offset], args[offset + 1 :]
        result = func(*head, _check_filter(name, value, rest, kwargs), *rest, **kwargs)
        if isinstance(result, _SIZED) and result is not value:
            _charge(len(result))
        return result

    return guarded


def _finalize(value: Any) -> Any:
    # Printing a list or dict prints everything it holds, shared references included.
    if not isinstance(value, _SCALARS):
        _require(_text_size(value), "printing a value")
    return value


def _raise_exception(message: Any) -> None:
    _require(_text_size(message), "raise_exception's message")
    raise TemplateError(f"the model's chat template refused the conversation: {message}")


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Hugging Face's tojson: its keywords and defaults, not jinja2's (which escapes for HTML).
    width = len(indent) if isinstance(indent, str) else max(indent or 0, 0)
    between = sum(len(s) for s in separators or () if isinstance(s, str)) or 2
    _require(_text_size(value, indent=width, separator=between) * 6, "the tojson filter")
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    _require(len(fmt) * 16 if isinstance(fmt, str) else 0, "strftime_now")
    return datetime.now().strftime(fmt)


class _GenerationBlock(Extension):
    """Hugging Face's `{% generation %}…{% endgeneration %}`: renders its body as is."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class _CodeGenerator(CodeGenerator):
    """Compiles `a ~ b` to a size-checked join (jinja2 offers no hook for it)."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            markup = "context.eval_ctx.volatile"
        else:
            markup = repr(bool(frame.eval_ctx.autoescape))
        self.write("environment.join_values((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(f"), {markup})")


class _ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        # Bound methods of text (str's own, or Markup's Python wrappers of the same names)
        # and of lists and dicts: most of them copy what they are called on.
        bound = getattr(obj, "__self__", None)
        if isinstance(obj, types.BuiltinMethodType | types.MethodType) and isinstance(
            bound, _SIZED
        ):
            if isinstance(bound, str | bytes):
                args = _check_text_method(bound, obj.__name__, args, kwargs)
            if obj.__name__ not in _LOOKUPS and not obj.__name__.startswith("is"):
                _charge(len(bound))
        return super().call(context, obj, *args, **kwargs)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, slice) and isinstance(obj, _SIZED):
            _charge(len(obj))  # a slice is a copy
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        sandboxed = super().wrap_str_format(value)
        if sandboxed is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map and args and isinstance(args[0], Mapping):
                _check_format(fmt, list(args[0].values()))
            else:
                _check_format(fmt, [*args, *kwargs.values()])
            return sandboxed(*args, **kwargs)

        return functools.update_wrapper(bounded, value)

    def join_values(self, values: tuple[Any, ...], markup: bool) -> str:
        """`a ~ b ~ …`, once the text it makes is known to be small enough."""
        _require(sum(_text_size(value) for value in values), "joining with '~'")
        return markup_join(values) if markup else str_join(values)

    def concat(self, pieces: Iterable[str]) -> str:  # type: ignore[override]
        """The output of a macro, a call or a captured block, joined."""
        pieces = list(pieces)
        _require(sum(len(p) for p in pieces if isinstance(p, str)), "joining output")
        return "".join(pieces)


def sandboxed_environment() -> ImmutableSandboxedEnvironment:
    """A new environment for chat templates: Hugging Face's helpers, jinja2's immutable
    sandbox, size guards on every operation that can blow a value up."""
    env = _ChatTemplateEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[loopcontrols, _GenerationBlock],
        undefined=jinja2.Undefined,
        finalize=_finalize,
    )
    env.filters["tojson"] = _tojson
    for name, func in list(env.filters.items()):
        env.filters[name] = _guard_filter(name, func)
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
    return env


class _DeadlinePassed(BaseException):
    # A BaseException so that no `except Exception` between the template and
    # render_bounded (jinja2's runtime, a filter) can swallow it.
    pass


# A render may make this many times its output bound in values along the way: a real
# template makes each message's text a few times over (`'<|im_start|>' + role + …`).
BUDGET_PER_OUTPUT_CHAR = 16


def render_bounded(
    template: jinja2.Template, context: dict[str, Any], *, seconds: float, max_chars: int
) -> str:
    """Render `template` with `context`; RenderLimitExceeded once it has run `seconds` or
    written more than `max_chars`, when one step would make a value too large, or when all
    its steps together have made more than BUDGET_PER_OUTPUT_CHAR × `max_chars`.

    The deadline is checked by a trace function on every line the rendering thread runs,
    so it holds in loops that print nothing; the previous trace function (a debugger,
    coverage) is put back afterwards.
    """
    clock = time.monotonic
    deadline = clock() + seconds

    def check_deadline(frame: Any, event: str, arg: Any) -> Any:
        if clock() > deadline:
            raise _DeadlinePassed
        return check_deadline

    pieces: list[str] = []
    written = 0
    stream = template.generate(context)
    budget = BUDGET_PER_OUTPUT_CHAR * max_chars
    charges = _budget.set([budget, budget])
    previous = sys.gettrace()
    sys.settrace(check_deadline)
    try:
        for piece in stream:
            written += len(piece)
            if written > max_chars:
                raise RenderLimitExceeded(
                    f"the model's chat template wrote more than {max_chars:,} characters"
                )
            pieces.append(piece)
    except _DeadlinePassed:
        pass  # reported below, with the case where something swallowed it
    except ValueTooLarge as err:
        raise RenderLimitExceeded(f"the model's chat template was stopped: {err}") from err
    except RecursionError:
        raise RenderLimitExceeded("the model's chat template nests calls too deeply") from None
    except MemoryError:
        raise RenderLimitExceeded("the model's chat template ran out of memory") from None
    finally:
        sys.settrace(previous)
        stream.close()
        _budget.reset(charges)
    if clock() > deadline:
        raise RenderLimitExceeded(f"the model's chat template ran longer than {seconds:g} s")
    return "".join(pieces)
