"""JSON schemas into llama.cpp grammars (owl/engine/grammar.py, llama/gbnf.py): the grammar
is the converter's own, what is accepted at the limits (tests/engine/test_schema_check.py)
parses in llama.cpp, and hostile schemas are refused cleanly or stay bounded.

llama.cpp parses in a child process, so that a crash shows as a dead child, not a dead
pytest; on a worker thread, as the engine parses, with a 512 KB stack (macOS's default for
such threads, and the tightest a server may get: Linux gives 8 MB).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owl.engine.grammar import _convert, json_grammar
from owl.engine.schema_limits import (
    MAX_GRAMMAR_CHARS,
)
from owl.errors import InvalidPrompt
from tests.engine.test_schema_check import AT_THE_LIMIT, REPEATS, SPAN, TREE, pattern

PARSER = """
import ctypes, json, os, sys, threading
from concurrent.futures import ThreadPoolExecutor
import llama_cpp
_quiet = llama_cpp.llama_log_callback(lambda level, text, data: None)
llama_cpp.llama_log_set(_quiet, ctypes.c_void_p(0))
params = llama_cpp.llama_model_default_params()
params.vocab_only = True
model = llama_cpp.llama_model_load_from_file(sys.argv[1].encode(), params)
vocab = llama_cpp.llama_model_get_vocab(model)
def parse(grammar):
    sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
    if sampler:
        llama_cpp.llama_sampler_free(sampler)
    return bool(sampler)
threading.stack_size(512 * 1024)
with ThreadPoolExecutor(1) as engine:
    for i, grammar in enumerate(json.load(open(sys.argv[2]))):
        print(i, engine.submit(parse, grammar).result(), flush=True)
"""


def parse_in_llama_cpp(grammars: list[str], gguf: Path) -> list[bool]:
    """Whether llama.cpp accepts each grammar; fails the test, naming the grammar, if the
    child dies on one."""
    with tempfile.TemporaryDirectory() as folder:
        given_path, errors = Path(folder, "grammars.json"), Path(folder, "stderr")
        given_path.write_text(json.dumps(grammars))
        with errors.open("w") as stderr:  # llama.cpp prints each grammar it refuses here
            child = subprocess.run(
                [sys.executable, "-c", PARSER, str(gguf), str(given_path)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                timeout=300,
            )
        answers = [line.split()[1] == "True" for line in child.stdout.splitlines()]
        if child.returncode != 0:
            last = errors.read_text(errors="replace")[-1500:]
            crashed = grammars[len(answers)][:300] if len(answers) < len(grammars) else "-"
            pytest.fail(f"the parser died ({child.returncode}) on {crashed!r}: {last}")
    return answers


@pytest.mark.slow
def test_every_grammar_at_the_limits_parses_in_llama_cpp(bundled_gguf: Path) -> None:
    grammars = [json_grammar(schema) for schema in AT_THE_LIMIT.values()]
    parsed = parse_in_llama_cpp(grammars, bundled_gguf)
    assert dict(zip(AT_THE_LIMIT, parsed, strict=True)) == dict.fromkeys(AT_THE_LIMIT, True)


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        TREE,
        {"anyOf": [{"type": "integer"}, {"type": "string", "maxLength": 5}]},
        {
            "type": "object",
            "properties": {f"a{chr(0x4E00 + i)}": {"type": "string"} for i in range(9)},
        },
        pattern("[a-z]{2}-[0-9]{0,4}(x|y)?"),
    ],
)
def test_the_grammar_is_the_converters_own(schema: dict[str, Any]) -> None:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    assert _convert(json.dumps(schema)) == json_schema_to_gbnf(json.dumps(schema))


# Hostile schemas: the bounds at random, around the limits and far beyond them.
COUNTS = st.one_of(
    st.none(),
    st.integers(0, 12),
    st.sampled_from([SPAN - 1, SPAN, SPAN + 1, REPEATS, REPEATS + 1, 30_000, 20_000_000]),
    st.integers(-5, 10**9),
)
NAMES = st.one_of(st.text(max_size=6), st.sampled_from(["\ud800", '"', "\\", "名前", "root"]))
ATOMS = ["a", ".", "[a-z]", '[^"]', "\\.", "\\U0010FFFF", "\\x4", "(", ")", "|", "?", "*", "+"]
ATOMS += ["{3}", "{0,5}", "{2,}", "{1,600}", "{20000}", "{,3}", "{x}", "]", "}", "\\", '"', "é"]
PATTERNS = st.one_of(
    st.lists(st.sampled_from(ATOMS), max_size=14).map(lambda atoms: "^" + "".join(atoms) + "$"),
    st.text(max_size=8),
)
REFS = st.sampled_from(["#/$defs/a", "#/$defs/b", "#/$defs/a/anyOf/0", "#", "#/no", "https://x"])
PRIMITIVES = ["string", "integer", "number", "boolean", "null", "object", "array"]


def without_none(**fields: Any) -> dict[str, Any]:
    return {key: value for key, value in fields.items() if value is not None}


LEAVES = st.one_of(
    st.just({}),
    st.sampled_from([{"type": kind} for kind in PRIMITIVES]),
    st.builds(functools.partial(without_none, type="string"), minLength=COUNTS, maxLength=COUNTS),
    st.builds(lambda p: {"type": "string", "pattern": p}, PATTERNS),
    st.builds(lambda n: {"enum": list(range(n))}, st.integers(0, 300)),
    st.builds(lambda v: {"const": v}, st.integers() | st.text(max_size=4)),
    st.builds(lambda ref: {"$ref": ref}, REFS),
    st.builds(lambda kinds: {"type": kinds}, st.lists(st.sampled_from(PRIMITIVES), max_size=4)),
)


def grow(children: st.SearchStrategy) -> st.SearchStrategy:
    branches = st.lists(children, max_size=4)
    return st.one_of(
        st.builds(lambda bs: {"anyOf": bs}, branches),
        st.builds(lambda bs: {"oneOf": bs}, branches),
        st.builds(lambda bs: {"allOf": bs}, branches),
        st.builds(lambda child, n: {"anyOf": [child] * n}, children, st.integers(0, 300)),
        st.builds(
            functools.partial(without_none, type="array"),
            items=children | st.lists(children, max_size=3),
            minItems=COUNTS,
            maxItems=COUNTS,
        ),
        st.builds(
            lambda properties, required: {
                "type": "object",
                "properties": properties,
                "required": required,
            },
            st.dictionaries(NAMES, children, max_size=5),
            st.lists(NAMES, max_size=3),
        ),
        st.builds(
            lambda child, n: {"properties": {f"p{i}": child for i in range(n)}},
            children,
            st.integers(0, 400),
        ),
        st.builds(lambda child: {"type": "object", "additionalProperties": child}, children),
    )


SCHEMAS = st.builds(
    lambda body, a, b, depth: {
        **functools.reduce(lambda s, _: {"anyOf": [s, {"type": "null"}]}, range(depth), body),
        "$defs": {"a": a, "b": b},
    },
    st.recursive(LEAVES, grow, max_leaves=12),
    st.recursive(LEAVES, grow, max_leaves=4),
    st.recursive(LEAVES, grow, max_leaves=4),
    st.integers(0, 40),
)
HOSTILE = settings(
    max_examples=120,
    deadline=None,
    database=None,  # and no .hypothesis folder in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def grammar_or_refusal(schema: dict[str, Any]) -> str | None:
    """The grammar, or None for a clean refusal: never another exception."""
    try:
        grammar = json_grammar(schema)
    except InvalidPrompt as refused:
        assert "\n" not in str(refused)
        return None
    assert len(grammar) <= MAX_GRAMMAR_CHARS
    return grammar


@HOSTILE
@given(SCHEMAS)
def test_a_hostile_schema_is_refused_cleanly_or_bounded(schema: dict[str, Any]) -> None:
    grammar_or_refusal(schema)


@pytest.mark.slow
def test_what_hostile_schemas_are_allowed_parses_without_a_crash(bundled_gguf: Path) -> None:
    grammars: list[str] = []

    @HOSTILE
    @given(SCHEMAS)
    def collect(schema: dict[str, Any]) -> None:
        if (grammar := grammar_or_refusal(schema)) is not None:
            grammars.append(grammar)

    collect()
    assert grammars
    parse_in_llama_cpp(grammars, bundled_gguf)  # llama.cpp may refuse some; none may crash it
