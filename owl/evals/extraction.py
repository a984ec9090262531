"""The extraction task: does a model answer with the exact JSON an eval split expects?

Each line of the split is a chat example (`{"messages": [..., user, assistant]}`); the model
answers the conversation up to its last assistant turn, greedily, through owl's engine (the
GGUF path: llama.cpp, with LoRA adapters where the engine takes them). An answer is valid
JSON when the whole of it parses (surrounding whitespace and one enclosing Markdown code
fence aside); it is an exact match when the parsed value equals the expected one (numbers
by value, so 248 and 248.0 match; a boolean is never a number).
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from owl.config import Settings
from owl.errors import EvalError
from owl.pull import resolve
from owl.store import Store

Progress = Callable[[int, int], None]  # (examples done, examples in all)

MAX_ANSWER_TOKENS = 128  # an answer of the demo's shape is under 40 tokens
EVAL_CTX = 1024  # prompt and answer of one example fit with room to spare
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class Example:
    """One eval line: the conversation to answer, and the JSON value expected."""

    messages: list[dict[str, str]]
    expected: Any


@dataclass
class ExtractionResult:
    """Scores over the examples, and each answer (for a look at what went wrong)."""

    model: str
    adapters: list[str]
    examples: int
    exact: int
    valid: int
    seconds: float
    answers: list[str] = field(default_factory=list, repr=False)

    @property
    def exact_match(self) -> float:
        return self.exact / self.examples if self.examples else 0.0

    @property
    def json_valid(self) -> float:
        return self.valid / self.examples if self.examples else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("answers")
        return {**data, "exact_match": self.exact_match, "json_valid": self.json_valid}


def read_examples(path: Path, *, limit: int | None = None) -> list[Example]:
    """The examples of a chat JSONL split; EvalError naming the line if one is malformed."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise EvalError(f"cannot read {path}: {err}; give a UTF-8 JSONL file") from err
    examples: list[Example] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if limit is not None and len(examples) >= limit:
            break
        examples.append(_example(line, f"{path.name} line {number}"))
    if not examples:
        raise EvalError(f"{path} has no examples; give a JSONL file with one chat per line")
    return examples


def _example(line: str, where: str) -> Example:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise EvalError(f"{where} is not JSON ({err.msg})") from err
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        raise EvalError(f'{where} needs "messages": a list of {{"role", "content"}} strings')
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    if last < 1:
        raise EvalError(f"{where} needs a user turn followed by the expected assistant answer")
    expected = parse_answer(messages[last]["content"])
    if expected is None:
        raise EvalError(f"{where}: the expected assistant answer is not JSON")
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:last]]
    return Example(messages=prompt, expected=expected)


def parse_answer(text: str) -> Any | None:
    """The JSON value a whole answer holds (one enclosing code fence allowed), else None."""
    text = text.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None


def same_value(got: Any, want: Any) -> bool:
    """JSON equality: numbers by value, booleans only equal booleans, keys as a set."""
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, int | float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=0.0, abs_tol=1e-9)
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(same_value(got[k], want[k]) for k in want)
    if isinstance(want, list) and isinstance(got, list):
        return len(got) == len(want) and all(map(same_value, got, want))
    return type(got) is type(want) and got == want


def score_answer(answer: str, expected: Any) -> tuple[bool, bool]:
    """(valid JSON, exact match) of one answer."""
    parsed = parse_answer(answer)
    if parsed is None and answer.strip() != "null":
        return False, False
    return True, same_value(parsed, expected)


def score_answers(answers: Sequence[str], examples: Sequence[Example]) -> tuple[int, int]:
    """(valid, exact) counts of answers against their examples."""
    scores = [score_answer(a, e.expected) for a, e in zip(answers, examples, strict=True)]
    return sum(v for v, _ in scores), sum(x for _, x in scores)


def extraction(
    model: str,
    *,
    data: Path,
    store: Store,
    settings: Settings,
    adapters: Sequence[str] = (),
    limit: int | None = None,
    parallel: int = 1,
    allow_unsafe: bool = False,
    progress: Progress | None = None,
) -> ExtractionResult:
    """Score `model` (with `adapters`, if any) on the extraction split in `data`, greedily.

    `model` may be "BASE+ADAPTER[+…]"; `adapters` are more adapter names to apply. An adapter
    that is not in the store is ModelNotFound; one that does not fit, AdapterMismatch.
    `parallel` > 1 batches that many generations (faster); but a batch's arithmetic differs
    from a lone sequence's, so at a near-tie a greedy answer can depend on what it was
    batched with, and two runs can differ: one at a time, scores are reproducible.
    """
    from owl import engine
    from owl.engine.sampling import SamplingParams

    examples = read_examples(data, limit=limit)
    base, *combined = model.split("+")  # "BASE+ADAPTER": the server's spelling, also taken
    names = [*combined, *adapters]
    manifest = resolve(base.strip(), store=store, settings=settings, pull_missing=True)
    extra: dict[str, Any] = {}
    if names:
        extra["adapters"] = [
            resolve(name.strip(), store=store, settings=settings) for name in names
        ]
    config = settings.model_copy(update={"ctx": EVAL_CTX})
    slots = max(1, min(parallel, len(examples)))
    started = time.perf_counter()
    loaded = engine.load(
        manifest,
        store=store,
        settings=config,
        allow_unsafe=allow_unsafe,
        by="owl eval extraction",
        slots=slots,
        **extra,
    )
    try:
        params = SamplingParams(temperature=0.0, max_tokens=MAX_ANSWER_TOKENS)
        answers = _answers(loaded, examples, params, progress)
    finally:
        loaded.close()
    valid, exact = score_answers(answers, examples)
    return ExtractionResult(
        model=manifest.display_name,
        adapters=[adapter.display_name for adapter in extra.get("adapters", [])],
        examples=len(examples),
        exact=exact,
        valid=valid,
        seconds=time.perf_counter() - started,
        answers=answers,
    )


def _answers(
    loaded: Any, examples: Sequence[Example], params: Any, progress: Progress | None
) -> list[str]:
    # All submitted at once: the scheduler runs `slots` of them per decode step, and each
    # stream buffers its answer until it is read, in order.
    streams = [loaded.chat(example.messages, params) for example in examples]
    answers: list[str] = []
    for done, stream in enumerate(streams, start=1):
        with stream:
            answers.append("".join(delta.text for delta in stream))
        if progress is not None:
            progress(done, len(streams))
    return answers
