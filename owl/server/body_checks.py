"""Checks of a request's JSON that no schema states: text that is Unicode, bounded nesting.

JSON may carry lone surrogates ("\\ud800"): Python decodes them into a str that cannot be
encoded as UTF-8, so the first tokenizer, log line or response that touches it fails. And
JSON may nest as deep as the body allows, while pydantic, json.dumps and the grammar builder
recurse. Both are refused here, once, with the place in the body named — walked without
recursion, so that the check cannot itself overflow.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, model_validator
from pydantic_core import PydanticCustomError

# Deeper than any request owl takes needs (a JSON schema of a few dozen levels at most).
MAX_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")
ERROR_TYPE = "invalid_body"


def _where(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path)


def body_problem(data: Any) -> tuple[str, str | None] | None:
    """(message, param) for the first lone surrogate or over-deep nesting in `data`, or None."""
    pending: list[tuple[Any, tuple[str | int, ...]]] = [(data, ())]
    while pending:
        value, path = pending.pop()
        if len(path) > MAX_DEPTH:
            return (
                f"the request body nests deeper than {MAX_DEPTH} levels (at "
                f"'{_where(path[:8])}…'); flatten it",
                _where(path[:1]) or None,
            )
        if isinstance(value, str):
            if _SURROGATE.search(value):
                return _surrogate_message(path), _where(path) or None
        elif isinstance(value, dict):
            for key, item in value.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    return _surrogate_message(path), _where(path) or None
                pending.append((item, (*path, key)))
        elif isinstance(value, list):
            pending.extend((item, (*path, index)) for index, item in enumerate(value))
    return None


def _surrogate_message(path: tuple[str | int, ...]) -> str:
    where = f"'{_where(path)}'" if path else "the request body"
    return (
        f"{where} holds a lone surrogate (an escape such as \\ud800 without its pair), which "
        "is not Unicode text; send valid UTF-8"
    )


def checked(data: Any) -> Any:
    """`data`, or a pydantic error (a 400 naming the place) if it fails body_problem.

    For a model_validator(mode="before"): the error reaches owl/server/errors.py as a
    RequestValidationError like any other invalid field.
    """
    problem = body_problem(data)
    if problem is not None:
        message, param = problem
        raise PydanticCustomError(ERROR_TYPE, "{message}", {"message": message, "param": param})
    return data


class CheckedBody(BaseModel):
    """A request body that passes body_problem before any field is validated."""

    @model_validator(mode="before")
    @classmethod
    def _checked(cls, data: Any) -> Any:
        return checked(data)
