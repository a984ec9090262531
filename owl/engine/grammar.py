"""Output grammars: JSON, JSON that follows a schema, and tool calls, as llama.cpp GBNF.

The JSON-schema → GBNF conversion is llama-cpp-python's (llama_cpp.llama_grammar, the port
of llama.cpp's json_schema_to_grammar). Schemas come from requests: untrusted, so their
size is bounded and a schema the converter cannot handle is a clear 400, not a crash.
"""

from __future__ import annotations

import json
from typing import Any

from owl.errors import InvalidPrompt

MAX_SCHEMA_CHARS = 100_000


def json_grammar(schema: dict[str, Any] | None = None) -> str:
    """GBNF for any JSON object (`schema` None), or for JSON that validates against `schema`."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    if schema is None:
        schema = {"type": "object"}
    text = json.dumps(schema)
    if len(text) > MAX_SCHEMA_CHARS:
        raise InvalidPrompt(f"the JSON schema is over {MAX_SCHEMA_CHARS} characters; simplify it")
    try:
        return json_schema_to_gbnf(text)
    except RecursionError:
        raise InvalidPrompt("the JSON schema nests too deeply; simplify it") from None
    except Exception as err:  # the converter raises plain exceptions on what it cannot handle
        raise InvalidPrompt(
            f"owl cannot turn this JSON schema into a grammar ({type(err).__name__}: {err}); "
            "use the supported subset (types, properties, required, enum, const, items, "
            "anyOf/oneOf, $ref within the schema)"
        ) from err


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
