"""Output grammars: JSON, JSON that follows a schema, and tool calls, as llama.cpp GBNF.

The JSON-schema → GBNF conversion is llama-cpp-python's (llama_cpp.llama_grammar, the port
of llama.cpp's json_schema_to_grammar). Schemas come from requests: untrusted, so each is
checked against owl's bounds first (owl/engine/schema_limits.py: what the grammar would cost
llama.cpp to parse and to run), and a schema the converter cannot handle is a clear 400, not
a crash. Within those bounds a conversion takes well under a second.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from owl.engine.schema_limits import MAX_GRAMMAR_CHARS, check_schema
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
    """llama-cpp-python's json_schema_to_gbnf, with the converter's rule naming made linear."""
    converter = _converter_class()(
        prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False
    )
    schema = converter.resolve_refs(json.loads(text), "stdin")
    converter.visit(schema, "")
    return converter.format_grammar()


@cache
def _converter_class() -> type:
    from llama_cpp.llama_grammar import INVALID_RULE_CHARS_RE, SchemaConverter

    class Converter(SchemaConverter):
        """SchemaConverter whose _add_rule finds a free name in constant time: upstream
        tries name0, name1, … in turn, so property names that differ only in characters a
        rule name cannot hold ("名前", "住所" → "-") cost the square of their number (2,500
        took 1 s; 256 optional ones, whose rules are named again for every suffix, 1.2 s).
        The grammar says the same: equal rules share a name, different ones get their own.
        """

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self._named: dict[tuple[str, str], str] = {}
            self._next: dict[str, int] = {}

        def _add_rule(self, name: str, rule: str) -> str:
            base = INVALID_RULE_CHARS_RE.sub("-", name)
            if self._rules.get(base, rule) == rule:
                key = base
            elif (key := self._named.get((base, rule))) is None:
                number = self._next.get(base, 0)
                while f"{base}{number}" in self._rules:
                    number += 1
                self._next[base] = number + 1
                key = self._named[(base, rule)] = f"{base}{number}"
            self._rules[key] = rule
            return key

    return Converter


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
