"""The prompts a teacher is asked: one per line of a text file, or a chat JSONL."""

from __future__ import annotations

import json
from pathlib import Path

from owl.errors import TrainingDataError

Message = dict[str, str]

MAX_PROMPTS = 100_000
MAX_PROMPT_CHARS = 100_000


def read_prompts(path: Path) -> list[list[Message]]:
    """The conversations to ask the teacher: one per line of a .txt, or a chat JSONL.

    A .jsonl line is `{"messages": [...]}` (assistant turns after the last user turn are
    dropped: the teacher writes its own) or `{"prompt": "…"}`; any other file is text, one
    user prompt per non-blank line. TrainingDataError names a bad line.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TrainingDataError(f"cannot read prompts from {path}: {err}") from err
    jsonl = path.suffix.lower() == ".jsonl"
    prompts: list[list[Message]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        if len(line) > MAX_PROMPT_CHARS:
            raise TrainingDataError(f"{where} is longer than {MAX_PROMPT_CHARS} characters")
        prompts.append(_prompt_line(line, where) if jsonl else [_user(line.strip())])
        if len(prompts) > MAX_PROMPTS:
            raise TrainingDataError(f"{path} has more than {MAX_PROMPTS} prompts; split it")
    if not prompts:
        raise TrainingDataError(f"{path} has no prompts; give one per line (or a chat JSONL)")
    return prompts


def _user(text: str) -> Message:
    return {"role": "user", "content": text}


def _prompt_line(line: str, where: str) -> list[Message]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise TrainingDataError(f"{where} is not JSON ({err.msg})") from err
    if isinstance(row, dict) and isinstance(row.get("prompt"), str) and row["prompt"].strip():
        return [_user(row["prompt"])]
    messages = row.get("messages") if isinstance(row, dict) else None
    ok = isinstance(messages, list) and all(
        isinstance(m, dict)
        and m.get("role") in ("system", "user", "assistant")
        and isinstance(m.get("content"), str)
        for m in messages
    )
    if not ok:
        raise TrainingDataError(
            f'{where} needs "prompt": a string, or "messages": a list of {{"role", "content"}} '
            "with roles system, user, assistant"
        )
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    if last_user < 0:
        raise TrainingDataError(f"{where} has no user turn for the teacher to answer")
    return [{"role": m["role"], "content": m["content"]} for m in messages[: last_user + 1]]
