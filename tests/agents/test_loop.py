"""owl.agents.loop with the bundled SmolLM2 and the MCP test server (tests/support)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from owl.agents.loop import DECLINED, answer_with_tools
from owl.agents.mcp import McpTools
from owl.engine import tool_calls
from owl.errors import ConfigError
from tests.support.mcp_server import SECRET_WORD, STDIO_COMMAND

QUESTION = [
    {
        "role": "user",
        "content": "What is the secret word of the day? Call the secret_word tool to find out.",
    }
]


@pytest.fixture(scope="module")
def mcp_tools() -> Iterator[McpTools]:
    with McpTools.open([STDIO_COMMAND]) as tools:
        yield tools


class CountingTools:
    """The MCP tools, with each call's name counted (the loop's own record is checked too)."""

    def __init__(self, tools: McpTools) -> None:
        self.functions = tools.functions
        self._tools = tools
        self.ran: list[str] = []

    def call(self, name: str, arguments: dict) -> str:
        self.ran.append(name)
        return self._tools.call(name, arguments)


def test_the_model_calls_the_tool_and_answers_with_its_result(shared_model, mcp_tools) -> None:
    tools = CountingTools(mcp_tools)
    shown: list[tool_calls.ToolCall] = []
    answer = answer_with_tools(
        shared_model,
        QUESTION,
        tools,
        params=shared_model.sampling(temperature=0.0, max_tokens=96),
        show=shown.append,
        max_rounds=3,
    )
    # The word can only come from the tool: smollm2 calls it though it may answer in words.
    assert SECRET_WORD in answer.text
    assert [call.name for call in answer.calls][:1] == ["secret_word"]
    assert answer.calls[0].result == SECRET_WORD and answer.calls[0].ran
    assert tools.ran == [record.name for record in answer.calls]
    assert [call.name for call in shown] == tools.ran
    assert 1 <= answer.rounds <= 4
    assert len(answer.calls) <= 3
    assert any(SECRET_WORD in m["content"] for m in answer.messages if m["role"] == "user")


def test_a_declined_call_does_not_run_and_the_model_is_told(shared_model, mcp_tools) -> None:
    tools = CountingTools(mcp_tools)
    asked: list[str | None] = []

    def decline(call: tool_calls.ToolCall) -> bool:
        asked.append(call.name)
        return False

    answer = answer_with_tools(
        shared_model,
        QUESTION,
        tools,
        params=shared_model.sampling(temperature=0.0, max_tokens=64),
        confirm=decline,
        require_tool=True,
        max_rounds=1,
    )
    assert asked == ["secret_word"] and tools.ran == []
    assert not answer.calls[0].ran and answer.calls[0].result == DECLINED
    # The final turn was asked with the refusal in the conversation (and no tools offered).
    user_turns = [m["content"] for m in answer.messages if m["role"] == "user"]
    assert DECLINED in user_turns[-1]
    assert SECRET_WORD not in answer.text
    assert answer.rounds == 2 and answer.messages[-1] == {
        "role": "assistant",
        "content": answer.text,
    }


def test_the_rounds_are_bounded(shared_model, mcp_tools) -> None:
    tools = CountingTools(mcp_tools)
    answer = answer_with_tools(
        shared_model,
        [{"role": "user", "content": "Add 1 and 2 with the add tool, again and again."}],
        tools,
        params=shared_model.sampling(temperature=0.0, max_tokens=48),
        require_tool=True,
        max_rounds=2,
    )
    assert 1 <= len(tools.ran) <= 2 and len(answer.calls) == len(tools.ran)
    assert answer.rounds <= 3
    # Each call is in the conversation as the assistant's JSON, its result as the next turn.
    assert sum(
        '"tool_call"' in m["content"] for m in answer.messages if m["role"] == "assistant"
    ) == len(tools.ran)


def test_zero_rounds_is_refused(shared_model, mcp_tools) -> None:
    with pytest.raises(ConfigError, match="at least 1"):
        answer_with_tools(
            shared_model, QUESTION, mcp_tools, params=shared_model.sampling(), max_rounds=0
        )
