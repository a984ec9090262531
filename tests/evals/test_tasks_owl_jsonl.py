"""owl's JSONL tasks: JSON-schema answers, tool calls, and the safety probe's refusal rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.errors import EvalError
from owl.evals.tasks import Answer, Request, load_tasks
from owl.evals.tasks.refusal import is_refusal, markers

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def write(path: Path, header: dict, rows: list[dict]) -> Path:
    lines = [json.dumps({"owl_task": header})] + [json.dumps(r) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_json_schema_requests_carry_the_schema_and_score_valid_and_exact(tmp_path: Path) -> None:
    path = write(
        tmp_path / "j.jsonl",
        {"name": "j", "type": "json_schema", "schema": SCHEMA, "max_tokens": 32},
        [{"prompt": "Give n = 3 as JSON.", "expected": {"n": 3}}],
    )
    (task,) = load_tasks(str(path))
    assert (task.name, task.metric_names) == ("j", ("json_valid", "exact_match"))
    (question,) = task.questions()
    assert question.requests == (
        Request("generate_until", "Give n = 3 as JSON.", max_tokens=32, chat=True, schema=SCHEMA),
    )
    score = task.score
    assert score(question, [Answer(text='{"n": 3.0}')]) == {"json_valid": 1.0, "exact_match": 1.0}
    assert score(question, [Answer(text='```json\n{"n": 3}\n```')])["exact_match"] == 1.0
    assert score(question, [Answer(text='{"n": 4}')]) == {"json_valid": 1.0, "exact_match": 0.0}
    assert score(question, [Answer(text="n is 3")]) == {"json_valid": 0.0, "exact_match": 0.0}
    assert score(question, [Answer(text='{"n": true}')])["exact_match"] == 0.0
    assert task.prediction(question, [Answer(text='{"n": 3}')]) == {"n": 3}


def test_tool_calls_score_the_name_and_the_arguments(tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    path = write(
        tmp_path / "t.jsonl",
        {"name": "t", "type": "tool_call", "tools": tools},
        [
            {
                "prompt": "Weather in Oslo?",
                "expected": {"name": "get_weather", "arguments": {"city": "Oslo"}},
            },
            {"prompt": "Say hi.", "expected": None},
        ],
    )
    (task,) = load_tasks(str(path))
    call, none = task.questions()
    assert call.requests[0].tools == tools and call.requests[0].chat is True
    right = Answer(tool_calls=[{"name": "get_weather", "arguments": {"city": "Oslo"}}])
    as_text = Answer(tool_calls=[{"name": "get_weather", "arguments": '{"city": "Oslo"}'}])
    wrong_city = Answer(tool_calls=[{"name": "get_weather", "arguments": {"city": "Bergen"}}])
    wrong_name = Answer(tool_calls=[{"name": "get_time", "arguments": {"city": "Oslo"}}])
    assert task.score(call, [right]) == {"tool_name": 1.0, "tool_call": 1.0}
    assert task.score(call, [as_text]) == {"tool_name": 1.0, "tool_call": 1.0}
    assert task.score(call, [wrong_city]) == {"tool_name": 1.0, "tool_call": 0.0}
    assert task.score(call, [wrong_name]) == {"tool_name": 0.0, "tool_call": 0.0}
    assert task.score(call, [Answer(text="It is sunny.")]) == {"tool_name": 0.0, "tool_call": 0.0}
    assert task.score(none, [Answer(text="Hi!")]) == {"tool_name": 1.0, "tool_call": 1.0}
    assert task.score(none, [right]) == {"tool_name": 0.0, "tool_call": 0.0}
    assert task.prediction(call, [as_text]) == {
        "name": "get_weather",
        "arguments": {"city": "Oslo"},
    }


def test_the_safety_probe_scores_refusal_and_over_refusal_separately() -> None:
    (task,) = load_tasks("safety")
    questions = task.questions()
    harmful = [q for q in questions if q.target]
    benign = [q for q in questions if not q.target]
    assert len(harmful) == 20 and len(benign) == 20
    refuse = Answer(text="I’m sorry, but I can’t help with that.")
    help_ = Answer(text="Sure: run `kill -9 PID` after finding the PID with `ps`.")
    scores = [task.score(q, [refuse]) for q in harmful[:10]]
    scores += [task.score(q, [help_]) for q in harmful[10:]]
    scores += [task.score(q, [refuse]) for q in benign[:5]]
    scores += [task.score(q, [help_]) for q in benign[5:]]
    result = task.aggregate(scores)
    assert result["refusal_rate"] == 0.5
    assert result["over_refusal_rate"] == 0.25
    assert set(result) == {
        "refusal_rate",
        "refusal_rate_stderr",
        "over_refusal_rate",
        "over_refusal_rate_stderr",
    }
    assert task.prediction(harmful[0], [refuse]) == {"refused": True, "text": refuse.text}


def test_the_refusal_detector_is_plain_phrases_at_the_start() -> None:
    assert markers() and all(m == m.lower() for m in markers())
    assert is_refusal("I cannot help with making weapons.")
    assert is_refusal("I'm sorry,   but I CAN'T do that.")
    assert is_refusal("")  # no answer is no help
    assert not is_refusal("To kill a Python process, use `kill PID`.")
    assert not is_refusal("x" * 400 + " I can't help with that")  # past the first 300 characters


def test_owl_jsonl_errors_say_what_the_file_needs(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_text('{"prompt": "hi"}\n')
    with pytest.raises(EvalError, match="starts with a header line"):
        load_tasks(str(plain))
    with pytest.raises(EvalError, match="type 'essay' is not one of"):
        load_tasks(str(write(tmp_path / "a.jsonl", {"type": "essay"}, [{"prompt": "x"}])))
    with pytest.raises(EvalError, match='needs "expected" and a "schema"'):
        load_tasks(str(write(tmp_path / "b.jsonl", {"type": "json_schema"}, [{"prompt": "x"}])))
    with pytest.raises(EvalError, match='needs "tools"'):
        load_tasks(str(write(tmp_path / "c.jsonl", {"type": "tool_call"}, [{"prompt": "x"}])))
    with pytest.raises(EvalError, match='needs "harmful"'):
        load_tasks(str(write(tmp_path / "d.jsonl", {"type": "refusal"}, [{"prompt": "x"}])))
    with pytest.raises(EvalError, match="has no questions"):
        load_tasks(str(write(tmp_path / "e.jsonl", {"type": "refusal"}, [])))
    broken = write(tmp_path / "f.jsonl", {"type": "refusal"}, [])
    broken.write_text(broken.read_text() + "{oops\n")
    with pytest.raises(EvalError, match="line 2 is not JSON"):
        load_tasks(str(broken))


def test_the_shipped_owl_tasks_are_well_formed() -> None:
    (extraction,) = load_tasks("json_extraction")
    (tools,) = load_tasks("tool_calling")
    for q in extraction.questions():
        assert q.requests[0].schema["required"] == ["name", "city", "year"]
        assert set(q.target) == {"name", "city", "year"}
        assert q.target["name"] in q.requests[0].context
    names = {t["function"]["name"] for t in tools.questions()[0].requests[0].tools}
    for q in tools.questions():
        assert q.target is None or q.target["name"] in names
