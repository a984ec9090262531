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
Only a separate process under OS limits bounds those: the scan's trial render runs in
one (owl.scan.template_trial).

The guards, their estimates and the budget are in jinja_limits; this module wires them
into the environment and runs the bounded render.
"""

from __future__ import annotations

import functools
import json
import sys
import time
import types
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.ext import Extension, loopcontrols
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment

from owl.errors import TemplateError
from owl.formats.jinja_limits import (
    MAX_INT_BITS,
    MAX_VALUE_CHARS,
    SIZED,
    ValueTooLarge,
    bounded_range,
    charge,
    check_binop,
    check_format,
    check_text_method,
    guard_filter,
    render_budget,
    require,
    text_size,
)

__all__ = [
    "BUDGET_PER_OUTPUT_CHAR",
    "MAX_INT_BITS",
    "MAX_VALUE_CHARS",
    "RenderLimitExceeded",
    "ValueTooLarge",
    "render_bounded",
    "sandboxed_environment",
]


class RenderLimitExceeded(TemplateError):
    """A template that ran past a limit; `limit` names which ("time", "output", …)."""

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


# Methods of text, lists and dicts that look into them without copying them.
_LOOKUPS = frozenset(
    "startswith endswith find rfind index rindex count get keys values items".split()
)
_SCALARS = (str, int, float, type(None))


def _finalize(value: Any) -> Any:
    # Printing a list or dict prints everything it holds, shared references included.
    if not isinstance(value, _SCALARS):
        require(text_size(value), "printing a value")
    return value


def _raise_exception(message: Any) -> None:
    require(text_size(message), "raise_exception's message")
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
    require(text_size(value, indent=width, separator=between) * 6, "the tojson filter")
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    require(len(fmt) * 16 if isinstance(fmt, str) else 0, "strftime_now")
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
        check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        # Bound methods of text (str's own, or Markup's Python wrappers of the same names)
        # and of lists and dicts: most of them copy what they are called on.
        bound = getattr(obj, "__self__", None)
        if isinstance(obj, types.BuiltinMethodType | types.MethodType) and isinstance(bound, SIZED):
            if isinstance(bound, str | bytes):
                args = check_text_method(bound, obj.__name__, args, kwargs)
            if obj.__name__ not in _LOOKUPS and not obj.__name__.startswith("is"):
                charge(len(bound))
        return super().call(context, obj, *args, **kwargs)

    def getitem(self, obj: Any, argument: Any) -> Any:
        if isinstance(argument, slice) and isinstance(obj, SIZED):
            charge(len(obj))  # a slice is a copy
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        sandboxed = super().wrap_str_format(value)
        if sandboxed is None:
            return None
        fmt, is_map = value.__self__, value.__name__ == "format_map"

        def bounded(*args: Any, **kwargs: Any) -> str:
            if is_map and args and isinstance(args[0], Mapping):
                check_format(fmt, list(args[0].values()))
            else:
                check_format(fmt, [*args, *kwargs.values()])
            return sandboxed(*args, **kwargs)

        return functools.update_wrapper(bounded, value)

    def join_values(self, values: tuple[Any, ...], markup: bool) -> str:
        """`a ~ b ~ …`, once the text it makes is known to be small enough."""
        require(sum(text_size(value) for value in values), "joining with '~'")
        return markup_join(values) if markup else str_join(values)

    def concat(self, pieces: Iterable[str]) -> str:  # type: ignore[override]
        """The output of a macro, a call or a captured block, joined."""
        pieces = list(pieces)
        require(sum(len(p) for p in pieces if isinstance(p, str)), "joining output")
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
        env.filters[name] = guard_filter(name, func)
    env.globals.update(
        raise_exception=_raise_exception, strftime_now=_strftime_now, range=bounded_range
    )
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
    charges = render_budget.set([budget, budget])
    previous = sys.gettrace()
    sys.settrace(check_deadline)
    try:
        for piece in stream:
            written += len(piece)
            if written > max_chars:
                raise RenderLimitExceeded(
                    f"the model's chat template wrote more than {max_chars:,} characters",
                    limit="output",
                )
            pieces.append(piece)
    except _DeadlinePassed:
        pass  # reported below, with the case where something swallowed it
    except ValueTooLarge as err:
        raise RenderLimitExceeded(
            f"the model's chat template was stopped: {err}", limit=err.limit
        ) from err
    except RecursionError:
        raise RenderLimitExceeded(
            "the model's chat template nests calls too deeply", limit="recursion"
        ) from None
    except MemoryError:
        raise RenderLimitExceeded(
            "the model's chat template ran out of memory", limit="memory"
        ) from None
    finally:
        sys.settrace(previous)
        stream.close()
        render_budget.reset(charges)
    if clock() > deadline:
        raise RenderLimitExceeded(
            f"the model's chat template ran longer than {seconds:g} s", limit="time"
        )
    return "".join(pieces)
