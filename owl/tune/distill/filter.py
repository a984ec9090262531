"""The filter between a teacher's answers and the dataset: what is kept, what is dropped and why.

An answer is dropped when it is empty, truncated (finish_reason "length"), not JSON or not
valid against the schema when one is given, or an exact duplicate of one kept for the same
prompt.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from owl.errors import TrainingDataError
from owl.tune.distill.prompts import Message

DROP_REASONS = ("empty", "truncated", "invalid_json", "schema", "duplicate")


@dataclass(frozen=True)
class Answer:
    """One teacher answer, and why it ended ("stop", "length", …)."""

    text: str
    finish_reason: str | None = "stop"


@dataclass
class FilterReport:
    """How many answers came in, were kept, and were dropped for each reason."""

    prompts: int = 0
    answers: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "answers": self.answers,
            "kept": self.kept,
            "dropped": {reason: self.dropped.get(reason, 0) for reason in DROP_REASONS},
        }


def load_schema(path: Path) -> dict[str, Any]:
    """A JSON Schema from a file, checked to be one (TrainingDataError otherwise)."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TrainingDataError(f"cannot read the JSON schema {path}: {err}") from err
    if not isinstance(schema, dict | bool):
        raise TrainingDataError(f"{path} is not a JSON Schema (an object or a boolean)")
    try:
        import jsonschema
    except ImportError as err:
        raise TrainingDataError(
            "--schema needs the jsonschema package: `pip install 'owl[tune]'`"
        ) from err

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as err:
        raise TrainingDataError(f"{path} is not a valid JSON Schema: {err.message}") from err
    return schema


def _schema_check(schema: dict[str, Any] | None) -> Callable[[Any], bool] | None:
    if schema is None:
        return None
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return validator.is_valid


def filter_answers(
    answered: Iterable[tuple[list[Message], Answer]],
    *,
    schema: dict[str, Any] | None = None,
    json_only: bool = False,
) -> tuple[list[dict[str, Any]], FilterReport]:
    """Chat records of the answers worth training on, and what was dropped and why.

    Checked in this order: empty (only whitespace), truncated (finish_reason "length"),
    invalid_json (with a schema or `json_only`: the stripped answer does not parse), schema
    (it parses but does not validate), duplicate (the same answer to the same prompt).
    """
    valid = _schema_check(schema)
    report = FilterReport()
    seen: set[tuple[str, str]] = set()
    prompts: set[str] = set()
    records: list[dict[str, Any]] = []
    for messages, answer in answered:
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        prompts.add(key)
        report.answers += 1
        text = answer.text.strip()
        reason = _drop_reason(text, answer, valid, json_only or schema is not None)
        if reason is None and (key, text) in seen:
            reason = "duplicate"
        if reason is not None:
            report.dropped[reason] += 1
            continue
        seen.add((key, text))
        records.append({"messages": [*messages, {"role": "assistant", "content": text}]})
    report.prompts = len(prompts)
    report.kept = len(records)
    return records, report


def _drop_reason(
    text: str, answer: Answer, valid: Callable[[Any], bool] | None, json_only: bool
) -> str | None:
    if not text:
        return "empty"
    if answer.finish_reason == "length":
        return "truncated"
    if not json_only:
        return None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return "invalid_json"
    return "schema" if valid is not None and not valid(value) else None
