"""owl's own JSONL tasks: JSON-schema answers, tool calls, and the safety probe.

The first line is the header, `{"owl_task": {"name", "type", …}}`; every other line is a
question. The model answers each prompt as one user chat message (Request.chat), greedily.

- type "json_schema": rows `{"prompt", "expected", "schema"?}` (or one `schema` in the
  header). The answer goes out with the schema as its response_format. Scores: json_valid
  (the whole answer parses, one Markdown code fence allowed) and exact_match (the parsed
  value equals `expected`: numbers by value, booleans only as booleans, keys as a set; the
  extraction task's rules, owl.evals.extraction).
- type "tool_call": rows `{"prompt", "expected": {"name", "arguments"} | null, "tools"?}`
  (or one `tools` list in the header, OpenAI function tools). Scores: tool_name (the first
  call names the expected function; with `expected: null`, no call was made) and
  tool_call (the name and the arguments, by the same JSON equality).
- type "refusal": rows `{"prompt", "harmful": true|false}`. Scores: refusal_rate over the
  harmful prompts (higher is safer) and over_refusal_rate over the benign ones (lower is
  more helpful), by the phrase detector in owl.evals.tasks.refusal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from owl.errors import EvalError
from owl.evals.extraction import parse_answer, same_value
from owl.evals.tasks.refusal import is_refusal
from owl.evals.tasks.request import Answer, Question, Request
from owl.evals.tasks.task import Task, files_digest

MAX_TASK_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_TOKENS = 256
METRICS = {
    "json_schema": ("json_valid", "exact_match"),
    "tool_call": ("tool_name", "tool_call"),
    "refusal": ("refusal_rate", "over_refusal_rate"),
}


def read_header(path: Path) -> dict[str, Any] | None:
    """The owl_task header of a JSONL file, or None when its first line is not one."""
    try:
        with path.open(encoding="utf-8") as file:
            first = file.readline(MAX_TASK_BYTES)
    except (OSError, UnicodeDecodeError):
        return None
    try:
        header = json.loads(first)
    except json.JSONDecodeError:
        return None
    if isinstance(header, dict) and isinstance(header.get("owl_task"), dict):
        return header["owl_task"]
    return None


class OwlJsonlTask(Task):
    """A task from an owl JSONL file (header line, then one question a line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        header = read_header(path)
        if header is None:
            raise EvalError(
                f'{path.name}: an owl task file starts with a header line, {{"owl_task": '
                f'{{"name": "…", "type": "{" | ".join(METRICS)}"}}}}, then one question a line'
            )
        self.name = str(header.get("name") or path.stem)
        where = f"task {self.name} ({path.name})"
        self.output_type = header.get("type")
        if self.output_type not in METRICS:
            raise EvalError(
                f"{where}: type {self.output_type!r} is not one of {', '.join(METRICS)}"
            )
        self.metric_names = METRICS[self.output_type]
        self.max_tokens = header.get("max_tokens", DEFAULT_MAX_TOKENS)
        if (
            not isinstance(self.max_tokens, int)
            or isinstance(self.max_tokens, bool)
            or self.max_tokens < 1
        ):
            raise EvalError(f"{where}: max_tokens must be a positive whole number")
        self.description = header.get("description", "")
        self._schema = header.get("schema")
        self._tools = header.get("tools")
        self._where = where
        if path.stat().st_size > MAX_TASK_BYTES:
            raise EvalError(f"{where}: over {MAX_TASK_BYTES >> 20} MiB")
        self.rows = [_row(line, f"{where} line {n}") for n, line in _lines(path)]
        if not self.rows:
            raise EvalError(f"{where} has no questions after its header")
        for n, row in enumerate(self.rows, start=2):
            self._check(row, f"{where} question {n - 1}")
        self.digest = files_digest([path], root=path.parent)

    def _check(self, row: dict[str, Any], where: str) -> None:
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            raise EvalError(f'{where} needs "prompt": the text to send')
        if self.output_type == "json_schema":
            schema = row.get("schema", self._schema)
            if not isinstance(schema, dict) or "expected" not in row:
                raise EvalError(
                    f'{where} needs "expected" and a "schema" object (or one in the header)'
                )
        elif self.output_type == "tool_call":
            tools = row.get("tools", self._tools)
            if (
                not isinstance(tools, list)
                or not tools
                or not all(isinstance(t, dict) for t in tools)
            ):
                raise EvalError(
                    f'{where} needs "tools", a list of OpenAI function tools (or one in the header)'
                )
            expected = row.get("expected", "missing")
            if expected is not None and not (
                isinstance(expected, dict)
                and isinstance(expected.get("name"), str)
                and isinstance(expected.get("arguments", {}), dict)
            ):
                raise EvalError(
                    f'{where} needs "expected": {{"name", "arguments"}}, or null for no call'
                )
        elif not isinstance(row.get("harmful"), bool):
            raise EvalError(f'{where} needs "harmful": true or false')

    def questions(self, limit: int | None = None) -> list[Question]:
        rows = self.rows if limit is None else self.rows[: max(limit, 0)]
        out = []
        for index, row in enumerate(rows):
            request = Request(
                "generate_until",
                row["prompt"],
                max_tokens=self.max_tokens,
                chat=True,
                schema=row.get("schema", self._schema)
                if self.output_type == "json_schema"
                else None,
                tools=row.get("tools", self._tools) if self.output_type == "tool_call" else None,
            )
            target = row.get("harmful") if self.output_type == "refusal" else row.get("expected")
            out.append(Question(index, row, (request,), target))
        return out

    def score(self, question: Question, answers: list[Answer]) -> dict[str, float]:
        answer = answers[0]
        if self.output_type == "json_schema":
            text = answer.text or ""
            value = parse_answer(text)
            valid = value is not None or text.strip() == "null"
            return {
                "json_valid": float(valid),
                "exact_match": float(valid and same_value(value, question.target)),
            }
        if self.output_type == "tool_call":
            call = _first_call(answer)
            want = question.target
            if want is None:
                return {"tool_name": float(call is None), "tool_call": float(call is None)}
            name = call is not None and call["name"] == want["name"]
            arguments = name and same_value(call["arguments"], want.get("arguments", {}))
            return {"tool_name": float(name), "tool_call": float(arguments)}
        refused = float(is_refusal(answer.text or ""))
        return {"refusal_rate": refused} if question.target else {"over_refusal_rate": refused}

    def prediction(self, question: Question, answers: list[Answer]) -> Any:
        answer = answers[0]
        if self.output_type == "tool_call":
            return _first_call(answer) or answer.text
        if self.output_type == "refusal":
            return {"refused": is_refusal(answer.text or ""), "text": answer.text}
        value = parse_answer(answer.text or "")
        return value if value is not None else answer.text


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise EvalError(f"cannot read {path}: {err}; give a UTF-8 JSONL file") from err
    return [(n, line) for n, line in enumerate(lines[1:], start=2) if line.strip()]


def _row(line: str, where: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise EvalError(f"{where} is not JSON ({err.msg})") from err
    if not isinstance(row, dict):
        raise EvalError(f"{where} is not a JSON object")
    return row


def _first_call(answer: Answer) -> dict[str, Any] | None:
    """The first tool call as {"name", "arguments": value}; arguments given as JSON text parsed."""
    if not answer.tool_calls:
        return None
    call = answer.tool_calls[0]
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        parsed = parse_answer(arguments)
        arguments = parsed if parsed is not None else arguments
    return {"name": call.get("name"), "arguments": arguments}
