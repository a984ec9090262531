"""`owl run --mcp` and OWL_MCP_SERVERS, run as a user runs them, with the MCP test server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import TerminalSession, owl
from tests.support.mcp_server import SECRET_WORD, STDIO_COMMAND

pytestmark = pytest.mark.slow

QUESTION = "What is the secret word of the day? Call the secret_word tool to find out."


def test_run_shows_the_call_on_stderr_and_answers_on_stdout(owl_env: Path) -> None:
    result = owl(
        owl_env, "run", "smollm2", "--mcp", STDIO_COMMAND, QUESTION, "--temperature", "0",
        "--max-tokens", "96",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "tools: add, secret_word, fail" in result.stderr
    assert "tool call: secret_word({})" in result.stderr
    assert SECRET_WORD in result.stdout
    # stdout is the answer alone: no tool-call JSON, no call lines.
    assert "tool_call" not in result.stdout and "tool call:" not in result.stdout


def test_owl_mcp_servers_offers_the_same_tools(owl_env: Path, monkeypatch) -> None:
    monkeypatch.setenv("OWL_MCP_SERVERS", STDIO_COMMAND)
    result = owl(owl_env, "run", "smollm2", QUESTION, "--temperature", "0", "--max-tokens", "96")
    assert result.returncode == 0, result.stderr
    assert "tool call: secret_word({})" in result.stderr


def test_a_server_that_does_not_start_is_one_clear_line(owl_env: Path) -> None:
    result = owl(owl_env, "run", "smollm2", "--mcp", "owl-no-such-mcp-server", "hi")
    assert result.returncode != 0
    assert "owl-no-such-mcp-server" in result.stderr and "check the command" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_chat_asks_before_each_call_and_a_no_keeps_it_from_running(owl_env: Path) -> None:
    chat = TerminalSession(owl_env, "run", "smollm2", "--mcp", STDIO_COMMAND, "--temperature", "0")
    chat.read_until(b">>> ")
    chat.type(QUESTION)
    chat.read_until(b"? [y/N]")
    chat.type("n")
    chat.read_until(b">>> ", 2)
    chat.type("/bye")
    assert chat.close() == 0
    transcript = chat.transcript
    assert "run secret_word({})? [y/N]" in transcript
    # Declined: the word never reached the model, so it cannot be in the answer.
    assert SECRET_WORD not in transcript.split("[y/N]", 1)[1]
