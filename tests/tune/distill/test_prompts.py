"""owl.tune.distill.prompts: text and chat JSONL prompts files; a bad line is named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.errors import TrainingDataError
from owl.tune.distill.prompts import read_prompts
from tests.tune.distill.conftest import user


def test_read_prompts_text_and_jsonl(tmp_path: Path) -> None:
    text = tmp_path / "p.txt"
    text.write_text("first\n\n  second  \n")
    assert read_prompts(text) == [user("first"), user("second")]
    chat = tmp_path / "p.jsonl"
    system = {"role": "system", "content": "Be brief."}
    rows = [
        {"messages": [system, *user("q"), {"role": "assistant", "content": "old answer"}]},
        {"prompt": "plain"},
    ]
    chat.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert read_prompts(chat) == [[system, *user("q")], user("plain")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2 is not JSON"),
        ('{"messages": [{"role": "assistant", "content": "x"}]}', "line 2 has no user turn"),
        ('{"messages": [{"role": "tool", "content": "x"}]}', "line 2 needs"),
        ('{"prompt": 3}', "line 2 needs"),
    ],
)
def test_a_bad_prompts_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(TrainingDataError, match=message):
        read_prompts(path)


def test_an_empty_prompts_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("\n \n")
    with pytest.raises(TrainingDataError, match="no prompts"):
        read_prompts(path)
