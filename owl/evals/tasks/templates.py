"""Task templates (doc_to_text, doc_to_choice, …): Jinja, rendered in owl's sandbox.

A task file is untrusted input, as a model's chat template is: its templates render in
owl's immutable sandbox with its size guards and a deadline (owl.formats.jinja_sandbox).
The environment is otherwise lm-eval's own (`jinja2.Environment(undefined=StrictUndefined,
keep_trailing_newline=True)` with a `regex_replace` filter), since a prompt must come out
byte for byte as lm-eval renders it: no trim_blocks or lstrip_blocks here, unlike chat
templates, and a missing field is an error, not an empty string.
"""

from __future__ import annotations

import ast
import re
from functools import lru_cache
from typing import Any

import jinja2

from owl.errors import EvalError, TemplateError
from owl.formats.jinja_limits import guard_filter, require
from owl.formats.jinja_sandbox import RenderLimitExceeded, render_bounded, sandboxed_environment

RENDER_SECONDS = 2.0
MAX_RENDER_CHARS = 1_000_000  # far above any prompt a task needs
MAX_LITERAL_CHARS = 100_000  # a rendered choice list read with ast.literal_eval


def _regex_replace(text: str, pattern: str, repl: str, count: int = 0) -> str:
    # re.sub with a replacement can grow text by len(repl) per match.
    require(len(text) * (len(repl) + 1) if isinstance(repl, str) else 0, "regex_replace")
    return re.sub(pattern, repl, text, count=count)


def _environment() -> jinja2.Environment:
    env = sandboxed_environment()
    # lm-eval's settings, set before the first template is compiled (jinja2 picks a lexer
    # for the environment's settings when it compiles).
    env.trim_blocks = False
    env.lstrip_blocks = False
    env.keep_trailing_newline = True
    env.undefined = jinja2.StrictUndefined
    env.filters["regex_replace"] = guard_filter("regex_replace", _regex_replace)
    return env


_ENV = _environment()


@lru_cache(maxsize=512)
def _compile(source: str) -> jinja2.Template:
    return _ENV.from_string(source)


def render(source: str, doc: dict[str, Any], *, where: str) -> str:
    """`source` rendered with the row's fields as variables; EvalError saying where it broke."""
    try:
        template = _compile(source)
    except jinja2.TemplateSyntaxError as err:
        raise EvalError(f"{where}: the template is not valid Jinja ({err.message})") from err
    try:
        return render_bounded(
            template, dict(doc), seconds=RENDER_SECONDS, max_chars=MAX_RENDER_CHARS
        )
    except RenderLimitExceeded as err:
        raise EvalError(
            f"{where}: the template was stopped past its {err.limit} limit; "
            "a task template only formats a row's fields"
        ) from err
    except jinja2.exceptions.SecurityError as err:
        raise EvalError(
            f"{where}: the template reached for something a task template may not use "
            f"({err}); a task template only formats a row's fields"
        ) from err
    except jinja2.UndefinedError as err:
        raise EvalError(f"{where}: {err.message}; the row has {sorted(doc)}") from err
    except (TemplateError, jinja2.TemplateError) as err:
        raise EvalError(f"{where}: the template failed: {err}") from err
    except Exception as err:  # a template's own arithmetic or method call failing on a row
        raise EvalError(f"{where}: the template failed: {type(err).__name__}: {err}") from err


def literal(text: str, *, where: str) -> Any:
    """A Python literal a template rendered (a list of choices, a list of targets)."""
    if len(text) > MAX_LITERAL_CHARS:
        raise EvalError(
            f"{where}: the rendered value is longer than {MAX_LITERAL_CHARS:,} characters"
        )
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as err:
        raise EvalError(
            f"{where}: the template rendered {text[:80]!r}, which is not a Python literal "
            "(doc_to_choice must render a list such as ['yes', 'no'])"
        ) from err
