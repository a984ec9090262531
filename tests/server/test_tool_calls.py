"""Tool calls on any template: offered in a system message, read back from the output."""

from __future__ import annotations

import json

from owl.engine.tool_calls import Tools, parse, with_tools

WEATHER = {"name": "weather", "parameters": {"type": "object"}}


def test_a_call_is_read_back_with_its_arguments_as_json() -> None:
    content, calls = parse(json.dumps({"tool_call": {"name": "weather", "arguments": {"x": 1}}}))
    assert content is None and len(calls) == 1
    assert (calls[0].name, calls[0].arguments) == ("weather", {"x": 1})
    assert calls[0].id.startswith("call_")


def test_an_answer_in_words_or_a_cut_output_is_text() -> None:
    assert parse('{"response": "sunny"}') == ("sunny", ())
    assert parse('{"tool_call": {"na') == ('{"tool_call": {"na', ())


def test_the_tools_join_the_first_system_message() -> None:
    tools = Tools((WEATHER,), may_answer=False)
    joined = with_tools([{"role": "system", "content": "Be brief."}], tools)
    assert len(joined) == 1 and joined[0]["content"].startswith("Be brief.\n\n")
    assert '"weather"' in joined[0]["content"] and "without a tool" not in joined[0]["content"]
    added = with_tools([{"role": "user", "content": "hi"}], Tools((WEATHER,)))
    assert [message["role"] for message in added] == ["system", "user"]
    assert "without a tool" in added[0]["content"]
