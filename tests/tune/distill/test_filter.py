"""owl.tune.distill.filter: what is kept of fixed answers, what is dropped and why; schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.errors import TrainingDataError
from owl.tune.distill.filter import Answer, filter_answers, load_schema
from tests.tune.distill.conftest import SCHEMA, user


def test_filter_drops_each_reason_once_and_keeps_the_rest() -> None:
    a, b = user("a"), user("b")
    answered = [
        (a, Answer('{"name": "Ann", "amount": 3}', "stop")),  # kept
        (a, Answer('  {"name": "Ann", "amount": 3}\n', "stop")),  # duplicate once stripped
        (b, Answer('{"name": "Ann", "amount": 3}', "stop")),  # kept: the same text, other prompt
        (a, Answer("   \n", "stop")),  # empty
        (a, Answer('{"name": "Ann", "amo', "length")),  # truncated
        (b, Answer("Sure! Here it is.", "stop")),  # invalid_json
        (b, Answer('{"name": "Ann", "amount": "3"}', "stop")),  # schema
        (b, Answer('{"name": "Bo", "amount": 4.5}', None)),  # kept: no finish reason given
    ]
    records, report = filter_answers(answered, schema=SCHEMA)
    assert report.to_json() == {
        "prompts": 2,
        "answers": 8,
        "kept": 3,
        "dropped": {"empty": 1, "truncated": 1, "invalid_json": 1, "schema": 1, "duplicate": 1},
    }
    assert records == [
        {"messages": [*a, {"role": "assistant", "content": '{"name": "Ann", "amount": 3}'}]},
        {"messages": [*b, {"role": "assistant", "content": '{"name": "Ann", "amount": 3}'}]},
        {"messages": [*b, {"role": "assistant", "content": '{"name": "Bo", "amount": 4.5}'}]},
    ]


def test_without_a_schema_prose_is_kept_unless_json_is_asked_for() -> None:
    answered = [(user("a"), Answer("Paris.", "stop")), (user("b"), Answer("[1, 2]", "stop"))]
    records, report = filter_answers(answered)
    assert (report.kept, sum(report.dropped.values())) == (2, 0)
    records, report = filter_answers(answered, json_only=True)
    assert (report.kept, report.dropped["invalid_json"]) == (1, 1)
    assert records[0]["messages"][-1]["content"] == "[1, 2]"


def test_a_schema_that_is_not_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    assert load_schema(path) == SCHEMA
    path.write_text('{"type": "no-such-type"}')
    with pytest.raises(TrainingDataError, match="not a valid JSON Schema"):
        load_schema(path)
    path.write_text("[1]")
    with pytest.raises(TrainingDataError, match="not a JSON Schema"):
        load_schema(path)
