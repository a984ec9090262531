"""A request's JSON schema against owl's bounds (owl/engine/schema_check.py,
schema_limits.py, schema_branches.py, schema_pattern.py): every bound is refused by name
just over its limit, and what is just under it is accepted (tests/engine/test_grammar.py
parses those grammars in llama.cpp).
"""

from __future__ import annotations

from typing import Any

import pytest

from owl.engine.grammar import json_grammar, tool_call_schema
from owl.engine.schema_limits import (
    MAX_ALTERNATIVES,
    MAX_GRAMMAR_CHARS,
    MAX_NESTING,
    MAX_OPTIONAL_PROPERTIES,
    MAX_OPTIONAL_REPEATS,
    MAX_REPEATS,
)
from owl.engine.schema_pattern import (
    MAX_PATTERN_GROUP_DEPTH,
    MAX_PATTERN_OPTIONALS,
    MAX_STACKED_QUANTIFIERS,
)
from owl.errors import InvalidPrompt

INTEGERS = {"type": "array", "items": {"type": "integer"}}
SPAN, REPEATS = MAX_OPTIONAL_REPEATS, MAX_REPEATS


def nested(depth: int) -> dict[str, Any]:
    """`depth` schemas, each but the innermost an anyOf of the next and null."""
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(depth - 1):
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def nested_items(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(depth - 1):
        schema = {"type": "array", "items": schema, "maxItems": 3}
    return schema


def optional_properties(count: int) -> dict[str, Any]:
    return {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(count)}}


def pattern(body: str) -> dict[str, Any]:
    return {"type": "string", "pattern": f"^{body}$"}


TREE = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}},
        }
    },
    "type": "object",
    "properties": {"root": {"$ref": "#/$defs/node"}},
}
TOOLS = [
    {
        "name": f"tool_{i}",
        "parameters": {
            "type": "object",
            "properties": {
                "mode": {"enum": [f"m{j}" for j in range(10)]},
                "n": {"type": "integer"},
            },
            "required": ["mode"],
        },
    }
    for i in range(MAX_ALTERNATIVES)
]

# Each at its limit: accepted, and its grammar parses in llama.cpp.
AT_THE_LIMIT = {
    "maxLength": {"type": "string", "maxLength": SPAN},
    "minLength": {"type": "string", "minLength": REPEATS},
    "minLength+maxLength": {"type": "string", "minLength": REPEATS, "maxLength": REPEATS + SPAN},
    "maxItems": {**INTEGERS, "maxItems": SPAN},
    "minItems": {**INTEGERS, "minItems": REPEATS},
    "maxItems of objects": {
        "type": "array",
        "items": {"type": "object", "properties": {"a": {"type": "string", "maxLength": SPAN}}},
        "maxItems": SPAN,
    },
    "pattern {n,m}": pattern(f"a{{0,{SPAN}}}b{{0,{SPAN}}}"),
    "pattern {n}": pattern(f"[a-z]{{{REPEATS}}}"),
    "pattern groups": pattern(
        "(" * MAX_PATTERN_GROUP_DEPTH + f"a{{0,{SPAN}}}" + ")" * MAX_PATTERN_GROUP_DEPTH
    ),
    "pattern optionals": pattern(".?" * MAX_PATTERN_OPTIONALS),
    "pattern stacked": pattern("a" + "{0,1}" * MAX_STACKED_QUANTIFIERS),
    "nesting": nested(MAX_NESTING),
    "nested items": nested_items(MAX_NESTING),
    "enum": {"enum": list(range(MAX_ALTERNATIVES))},
    "anyOf": {"anyOf": [{"const": f"v{i}"} for i in range(MAX_ALTERNATIVES)]},
    "optional properties": optional_properties(MAX_OPTIONAL_PROPERTIES),
    "tool calls": tool_call_schema(TOOLS, may_answer=True),
    "recursion in items": TREE,
}

LEFT_LOOP = {
    "$defs": {
        "a": {"anyOf": [{"$ref": "#/$defs/b"}, {"type": "null"}]},
        "b": {"$ref": "#/$defs/a"},
    },
    "type": "object",
    "properties": {"x": {"$ref": "#/$defs/a"}},
}
SHARED_PREFIX = {  # 256 branches open together after {"a": , each with 256 values
    "$defs": {"E": {"enum": list(range(MAX_ALTERNATIVES))}},
    "anyOf": [
        {
            "type": "object",
            "properties": {"a": {"$ref": "#/$defs/E"}, f"z{i}": {}},
            "required": ["a"],
        }
        for i in range(MAX_ALTERNATIVES)
    ],
}
# Each just over its limit, and what the refusal must say (keyword, where, value, limit).
OVER_THE_LIMIT = {
    "maxLength": (
        {"type": "object", "properties": {"name": {"type": "string", "maxLength": SPAN + 1}}},
        ["maxLength", "$.properties.name", str(SPAN + 1), f"limit of {SPAN}"],
    ),
    "maxLength over minLength": (
        {"type": "string", "minLength": 10, "maxLength": 10 + SPAN + 1},
        ["maxLength", str(10 + SPAN + 1), f"limit of {10 + SPAN}", "minLength"],
    ),
    "minLength": ({"type": "string", "minLength": REPEATS + 1}, ["minLength", str(REPEATS + 1)]),
    "maxItems": ({**INTEGERS, "maxItems": SPAN + 1}, ["maxItems", "at $ ", f"limit of {SPAN}"]),
    "minItems": ({**INTEGERS, "minItems": REPEATS + 1}, ["minItems", f"limit of {REPEATS}"]),
    "minItems over maxItems": ({**INTEGERS, "minItems": 3, "maxItems": 2}, ["minItems 3", "2"]),
    "a bound that is not a count": ({"type": "string", "maxLength": "9"}, ["maxLength", "'9'"]),
    "a negative bound": ({**INTEGERS, "minItems": -1}, ["minItems", "non-negative"]),
    "pattern {n,m}": (pattern(f"a{{1,{SPAN + 2}}}"), ["pattern", f"{{1,{SPAN + 2}}}", str(SPAN)]),
    "pattern {n}": (pattern(f"a{{{REPEATS + 1}}}"), ["pattern", str(REPEATS + 1), str(REPEATS)]),
    "pattern {n,}": (pattern(f"a{{{REPEATS + 1},}}"), ["pattern", f"limit of {REPEATS}"]),
    "pattern {-n,m}": (pattern(f"a{{-{SPAN},1}}"), ["pattern", str(SPAN + 1)]),
    "pattern groups": (pattern("(" * 33 + "a" + ")" * 33), ["pattern", "groups", "32"]),
    "pattern optionals": (pattern("(.?)" * 7), ["pattern", "7 optional", "limit of 6"]),
    "pattern optionals repeated": (pattern("(a?){7}"), ["pattern", "7 optional"]),
    "pattern stacked": (pattern("a" + "{0,1}" * 5), ["pattern", "5 quantifiers", "limit of 4"]),
    "pattern ]": (pattern("a]"), ["pattern", "unescaped ']'", "\\]"]),
    "pattern }": (pattern("}"), ["pattern", "unescaped '}'"]),
    "nesting": (nested(MAX_NESTING + 1), ["nests", f"limit of {MAX_NESTING}", "$.anyOf[0]"]),
    "nesting of the JSON": (nested(1000), ["nests", "100 levels"]),
    "nesting through $ref": (
        {
            "$defs": {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(40)},
            "type": "object",
            "properties": {"x": {"$ref": "#/$defs/d0"}},
        },
        ["nests", f"limit of {MAX_NESTING}", "#/$defs/d"],
    ),
    "enum": ({"enum": list(range(MAX_ALTERNATIVES + 1))}, ["enum", "257 alternatives", "256"]),
    "anyOf of the same start": (SHARED_PREFIX, ["anyOf", "65536 alternatives", "256"]),
    "type list and anyOf": (
        {"anyOf": [{"type": ["string", "null"]} for _ in range(129)]},
        ["anyOf", "258 alternatives"],
    ),
    "optional properties": (
        optional_properties(3300),  # was "nests too deeply": one Python frame a property
        ["properties at $ ", "3300 optional properties", f"limit of {MAX_OPTIONAL_PROPERTIES}"],
    ),
    "optional properties in all": (
        {
            "type": "object",
            "properties": {k: optional_properties(MAX_OPTIONAL_PROPERTIES) for k in "abcde"},
            "required": list("abcde"),
        },
        ["$.properties.e", "the sum over its objects", "in required"],
    ),
    "tool calls": (
        tool_call_schema([*TOOLS, {"name": "one_more"}], may_answer=True),
        ["anyOf", "257 alternatives"],
    ),
    "a $ref loop": (LEFT_LOOP, ["$ref '#/$defs/a'", "left recursion", "properties or items"]),
    "a $ref to itself": ({"$ref": "#"}, ["Unsupported ref"]),
    "not an object": ([{"type": "string"}], ["JSON object"]),
    "grammar size": (
        {
            "type": "object",
            "properties": {f"p{i}": {**INTEGERS, "minItems": REPEATS} for i in range(20)},
            "required": [f"p{i}" for i in range(20)],
        },
        ["grammar", f"limit of {MAX_GRAMMAR_CHARS}", "$.properties.p1"],
    ),
}


@pytest.mark.parametrize("schema", AT_THE_LIMIT.values(), ids=AT_THE_LIMIT)
def test_a_schema_at_each_limit_is_accepted(schema: dict[str, Any]) -> None:
    assert len(json_grammar(schema)) <= MAX_GRAMMAR_CHARS


@pytest.mark.parametrize(("schema", "said"), OVER_THE_LIMIT.values(), ids=OVER_THE_LIMIT)
def test_a_schema_over_each_limit_is_refused_by_name(schema: Any, said: list[str]) -> None:
    with pytest.raises(InvalidPrompt) as refused:
        json_grammar(schema)
    message = str(refused.value)
    assert "\n" not in message
    for part in said:
        assert part in message


def test_the_segfaulting_schema_of_the_issue_is_refused() -> None:
    # 30000 optional characters nest 30000 groups deep: llama.cpp's parser overflowed the
    # stack and took the server with it.
    with pytest.raises(InvalidPrompt, match=r"^maxLength 30000 at \$ is over owl's limit of 500"):
        json_grammar({"type": "string", "maxLength": 30000})


@pytest.mark.parametrize("count", [200_000, 20_000_000])
def test_millions_of_items_are_refused_before_anything_is_built(count: int) -> None:
    with pytest.raises(InvalidPrompt, match=rf"^minItems {count} at \$ is over owl's limit"):
        json_grammar({**INTEGERS, "minItems": count})


def test_a_grammar_over_the_size_limit_is_refused_after_conversion() -> None:
    # Within every bound, and 46 KB as JSON; but the converter names each optional property
    # in several rules (its value, what may follow it), and its names are long: 310 KB.
    names = [f"{'x' * 1500}{i}" for i in range(30)]
    schema = {"type": "object", "properties": dict.fromkeys(names, {"type": "string"})}
    with pytest.raises(InvalidPrompt, match=r"^the grammar for this JSON schema is \d+ char"):
        json_grammar(schema)


def test_a_flat_object_of_thousands_of_required_properties_works() -> None:
    names = [f"p{i}" for i in range(2000)]
    schema = {"type": "object", "properties": dict.fromkeys(names, {}), "required": names}
    assert '"\\"p1999\\""' in json_grammar(schema)
