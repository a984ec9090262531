"""owl/engine/llama/log.py: llama.cpp's log lines caught for a block, then given back."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from owl.engine.llama.log import LOG_ERROR, log_to, quiet
from owl.engine.llama.model import load_model
from owl.errors import EngineError
from tests.support.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.slow  # it asks llama.cpp to load a (broken) model


def test_the_lines_of_a_failed_load_reach_the_block_and_only_it(tmp_path: Path) -> None:
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    lines: list[tuple[int, str]] = []
    with log_to(lambda level, text: lines.append((level, text))):
        with pytest.raises(EngineError, match="could not load tiny.gguf"):
            load_model(tiny)
    assert any(level >= LOG_ERROR for level, _ in lines)
    seen = len(lines)
    with pytest.raises(EngineError):
        load_model(tiny)
    assert len(lines) == seen  # the log went back to llama-cpp-python's logger


def test_quiet_leaves_only_errors() -> None:
    quiet()
    assert logging.getLogger("llama-cpp-python").level == logging.ERROR
