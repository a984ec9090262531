"""JSON schema → GBNF: llama-cpp-python's converter (the port of llama.cpp's
json_schema_to_grammar), imported when first used, with its rule naming made linear.

It does not bound what it is given: owl/engine/grammar.py checks a schema first.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any


def schema_to_gbnf(text: str) -> str:
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
