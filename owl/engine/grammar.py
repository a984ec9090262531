"""Output grammars: JSON, JSON that follows a schema, and tool calls, as llama.cpp GBNF.

The JSON-schema → GBNF conversion is llama-cpp-python's (owl/engine/llama/gbnf.py, the port
of llama.cpp's json_schema_to_grammar). Schemas come from requests: untrusted, so each is
checked against owl's bounds first (owl/engine/schema_limits.py: what the grammar would cost
llama.cpp to parse and to run), and a schema the converter cannot handle is a clear 400, not
a crash. Within those bounds a conversion takes well under a second.
"""

from __future__ import annotations

import json
from typing import Any

from owl.engine.llama.gbnf import schema_to_gbnf
from owl.engine.schema_check import check_schema
from owl.engine.schema_limits import MAX_GRAMMAR_CHARS
from owl.errors import InvalidPrompt


def json_grammar(schema: dict[str, Any] | None = None) -> str:
    """GBNF for any JSON object (`schema` None), or for JSON that validates against `schema`."""
    if schema is None:
        schema = {"type": "object"}
    check_schema(schema)
    try:
        grammar = _convert(json.dumps(schema))
    except RecursionError:  # check_schema bounds the nesting; this is the net under it
        raise InvalidPrompt("the JSON schema nests too deeply; flatten it") from None
    except Exception as err:  # the converter raises plain exceptions on what it cannot handle
        raise InvalidPrompt(
            f"owl cannot turn this JSON schema into a grammar ({type(err).__name__}: {err}); "
            "use the supported subset (types, properties, required, enum, const, items, "
            "anyOf/oneOf, $ref within the schema)"
        ) from err
    if len(grammar) > MAX_GRAMMAR_CHARS:
        raise InvalidPrompt(
            f"the grammar for this JSON schema is {len(grammar)} characters, over owl's limit "
            f"of {MAX_GRAMMAR_CHARS}; lower its bounds (minItems, maxItems, minLength, "
            "maxLength) or shorten its property names and enum values"
        )
    return grammar


def _convert(text: str) -> str:
    """A JSON schema (as JSON text) to GBNF, unchecked: owl/engine/llama/gbnf.py."""
    return schema_to_gbnf(text)


def tool_call_schema(tools: list[dict[str, Any]], *, may_answer: bool) -> dict[str, Any]:
    """A schema for one call of one of `tools` (OpenAI function definitions):
    {"tool_call": {"name": …, "arguments": {…}}}, or, when `may_answer`, also
    {"response": "text"} — llama.cpp's generic tool-call format, for templates without
    their own.
    """
    calls = [
        {
            "type": "object",
            "properties": {
                "name": {"const": tool["name"]},
                "arguments": tool.get("parameters") or {"type": "object"},
            },
            "required": ["name", "arguments"],
        }
        for tool in tools
    ]
    call = {
        "type": "object",
        "properties": {"tool_call": calls[0] if len(calls) == 1 else {"anyOf": calls}},
        "required": ["tool_call"],
    }
    if not may_answer:
        return call
    answer = {
        "type": "object",
        "properties": {"response": {"type": "string"}},
        "required": ["response"],
    }
    return {"anyOf": [call, answer]}
