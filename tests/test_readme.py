"""The README's library example runs as written (it is the first code a user copies)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

pytestmark = pytest.mark.slow  # it loads the embedded model


def _library_example() -> str:
    section = README.read_text().split("## Library use", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_library_example_answers(capsys: pytest.CaptureFixture[str]) -> None:
    exec(compile(_library_example(), "README.md", "exec"), {})  # noqa: S102
    assert capsys.readouterr().out.strip()
