"""A Responses request as the serving core's Task: items into messages, tools, formats."""

from __future__ import annotations

import json

import pytest

from owl.engine.images import IMAGE_MARKER
from owl.errors import InvalidPrompt
from owl.server.openai.responses.protocol import ITEMS, ResponsesRequest
from owl.server.serving import JsonOutput

WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def task_of(**fields: object):
    request = ResponsesRequest.model_validate({"model": "m", **fields})
    return request.to_task(request.items())


def test_a_string_is_one_user_message_after_the_instructions() -> None:
    task = task_of(input="hi", instructions="Be brief.")
    assert task.messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]


def test_items_become_the_chat_apis_messages() -> None:
    call = {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"}
    task = task_of(
        input=[
            {"role": "developer", "content": "Use tools."},
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look: "},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
            call,
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
            {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "Sunny."}],
            },
        ]
    )
    roles = [message["role"] for message in task.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant"]
    assert task.messages[1]["content"] == f"Look: {IMAGE_MARKER}"
    assert task.images == ("data:image/png;base64,AAAA",)
    called = json.loads(task.messages[2]["content"])
    assert called == {"tool_call": {"name": "get_weather", "arguments": {}}}
    assert "call_1" in task.messages[3]["content"] and "sunny" in task.messages[3]["content"]


def test_stored_items_read_back_as_they_were_given() -> None:
    request = ResponsesRequest.model_validate(
        {"model": "m", "input": [{"role": "user", "content": "hi"}]}
    )
    dumped = ITEMS.dump_python(request.items(), mode="json", exclude_none=True)
    assert ITEMS.validate_python(dumped) == request.items()


def test_tool_choice_decides_whether_the_model_may_answer_in_words() -> None:
    assert task_of(input="x", tools=[WEATHER]).tools.may_answer
    assert not task_of(input="x", tools=[WEATHER], tool_choice="required").tools.may_answer
    assert task_of(input="x", tools=[WEATHER], tool_choice="none").tools is None
    named = task_of(
        input="x", tools=[WEATHER], tool_choice={"type": "function", "name": "get_weather"}
    )
    assert [tool["name"] for tool in named.tools.functions] == ["get_weather"]
    with pytest.raises(InvalidPrompt, match="not among the tools"):
        task_of(input="x", tools=[WEATHER], tool_choice={"type": "function", "name": "other"})


def test_text_format_becomes_the_json_output() -> None:
    schema = {"type": "object"}
    form = {"format": {"type": "json_schema", "name": "s", "schema": schema}}
    assert task_of(input="x", text=form).output == JsonOutput(schema)
    assert task_of(input="x", text={"format": {"type": "json_object"}}).output == JsonOutput()
    assert task_of(input="x", text={"format": {"type": "text"}}).output is None
    with pytest.raises(InvalidPrompt, match="schema"):
        task_of(input="x", text={"format": {"type": "json_schema", "name": "s"}})


def test_an_empty_conversation_is_refused() -> None:
    with pytest.raises(InvalidPrompt, match="input is empty"):
        task_of(input=[])
