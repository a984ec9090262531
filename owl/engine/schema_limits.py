"""Bounds on a request's JSON schema, checked before it becomes a llama.cpp grammar.

The converter (owl/engine/grammar.py) turns every bound into grammar text, and llama.cpp parses
and runs that text in C: a hostile schema that is small as JSON can crash the process, freeze a
thread or slow every generation sharing the engine. Each limit below guards one such path, and
each was measured on llama-cpp-python 0.3.36 with SmolLM2's vocabulary (49,152 tokens), parsing
on a worker thread as the engine does, with Linux's 8 MB thread stack and macOS's 512 KB:

- A `maxLength` (or `maxItems`, or pattern `{n,m}`) of m − n optional repetitions becomes
  m − n nested groups, which llama.cpp's parser descends recursively: up to 18,704 it returns
  (refusing any over 1,000: "exceeds sane defaults"), 18,705 overflow an 8 MB stack, and on
  512 KB 1,151 do. Hence MAX_OPTIONAL_REPEATS, well below both.
- `minLength`/`minItems`/`{n}` repeat in a flat sequence: 40,000 parse in 8 ms, but they make
  grammars of megabytes (minItems 20,000,000 took 10 s and 1 GB to build). MAX_REPEATS and
  the estimate against MAX_GRAMMAR_CHARS refuse them before anything is built.
- Alternatives that are open at once (enum values, anyOf branches, optional properties,
  pattern `|`) each cost a pass over the vocabulary at every token: 0.5 ms each here (an enum
  of 1,000 took 0.53 s a token, of 5,000 2.7 s); a union of 256 objects that share their
  first property, each holding an enum of 256, would keep 65,536 open. MAX_ALTERNATIVES.
- A `pattern` has hazards of its own: owl/engine/schema_pattern.py.
- An object's optional properties cost the converter the square of their number (128 took
  0.04 s, 256 0.08 s, 900 1.6 s) and one Python frame each (3,300 raised RecursionError:
  "nests too deeply"). Four objects at MAX_OPTIONAL_PROPERTIES took 0.18 s in all.
- A `$ref` that reaches itself before any value starts is left recursion, which llama.cpp
  refuses only when a model runs it.
- `minimum`/`maximum`, `minProperties`/`maxProperties`: this converter ignores them (an integer
  is a fixed rule of up to 16 digits), so they cost nothing and are not bounded here.
"""

from __future__ import annotations

from owl.engine.schema_pattern import MAX_OPTIONAL_REPEATS, MAX_REPEATS
from owl.errors import InvalidPrompt

# MAX_REPEATS (minLength, minItems, pattern {n}) and MAX_OPTIONAL_REPEATS (maxLength −
# minLength, maxItems − minItems, pattern {n,m}) are schema_pattern's, shared.
MAX_SCHEMA_CHARS = 100_000
MAX_JSON_DEPTH = 100  # of the JSON itself: the converter's $ref resolver recurses through it
MAX_NESTING = 32  # schemas within schemas (properties, items, anyOf, … and $ref), each a level
MAX_ALTERNATIVES = 256  # open at one token
MAX_OPTIONAL_PROPERTIES = 128  # in one object
MAX_OPTIONAL_PROPERTY_WORK = 4 * MAX_OPTIONAL_PROPERTIES**2  # Σ over objects of count²
MAX_GRAMMAR_CHARS = 256 * 1024  # a 720 KB grammar still parses in 8 ms; 256 KB leaves margin

__all__ = [
    "MAX_ALTERNATIVES",
    "MAX_GRAMMAR_CHARS",
    "MAX_JSON_DEPTH",
    "MAX_NESTING",
    "MAX_OPTIONAL_PROPERTIES",
    "MAX_OPTIONAL_PROPERTY_WORK",
    "MAX_OPTIONAL_REPEATS",
    "MAX_REPEATS",
    "MAX_SCHEMA_CHARS",
]


def too_long() -> InvalidPrompt:
    return InvalidPrompt(f"the JSON schema is over {MAX_SCHEMA_CHARS} characters; simplify it")


def shown(path: str) -> str:
    """A schema path short enough for an error message."""
    return path if len(path) <= 200 else f"{path[:100]}…{path[-99:]}"


def too_wide(keyword: str, path: str, width: int) -> InvalidPrompt:
    return InvalidPrompt(
        f"{keyword} at {shown(path)} leaves up to {width} alternatives open at one token, "
        f"over owl's limit of {MAX_ALTERNATIVES} (llama.cpp checks each against the whole "
        "vocabulary at every token); use fewer enum values or branches, or begin the branches "
        "with different required properties"
    )
