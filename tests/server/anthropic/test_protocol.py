"""Anthropic requests as serving-core Tasks: the conversation, images, tools and refusals,
without a server (the routes are tested end to end in test_messages.py)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from owl.engine.images import IMAGE_MARKER
from owl.errors import InvalidImage, InvalidPrompt
from owl.server.anthropic.protocol import CountTokensRequest, MessagesRequest

WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city now.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}


def request(**fields: Any) -> MessagesRequest:
    body = {"model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    return MessagesRequest.model_validate({**body, **fields})


def test_system_blocks_a_tool_round_and_an_image_become_template_messages() -> None:
    task = request(
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[
            {
                "role": "user",
                "content": [{"type": "text", "text": "Look: "}, {"type": "image", "source": PNG}],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"},
                    {"type": "text", "text": "And?"},
                ],
            },
        ],
    ).to_task()
    assert task.messages == [
        {"role": "system", "content": "Be brief.\nBe kind."},
        {"role": "user", "content": f"Look: {IMAGE_MARKER}"},
        {
            "role": "assistant",
            "content": 'Checking.\n{"tool_call": {"name": "get_weather", "arguments": {}}}',
        },
        {"role": "user", "content": "Tool result (toolu_1): sunny\nAnd?"},
    ]
    assert task.images == ("data:image/png;base64," + PNG["data"],)


def test_sampling_stop_sequences_and_max_tokens_reach_the_task() -> None:
    task = request(temperature=0, top_k=5, stop_sequences=["\n\n", ""]).to_task()
    assert task.max_tokens == 8
    assert task.sampling == {"temperature": 0, "top_p": None, "top_k": 5, "stop": ("\n\n",)}


@pytest.mark.parametrize(
    ("choice", "names", "may_answer"),
    [
        (None, ["get_weather", "get_time"], True),
        ({"type": "auto"}, ["get_weather", "get_time"], True),
        ({"type": "any"}, ["get_weather", "get_time"], False),
        ({"type": "tool", "name": "get_time"}, ["get_time"], False),
    ],
)
def test_tool_choice_decides_what_may_be_called(
    choice: dict | None, names: list[str], may_answer: bool
) -> None:
    time_tool = {"name": "get_time", "input_schema": {"type": "object"}}
    tools = request(tools=[WEATHER, time_tool], tool_choice=choice).to_task().tools
    assert tools is not None
    assert [function["name"] for function in tools.functions] == names
    assert tools.may_answer is may_answer
    assert tools.functions[0]["parameters"] == (
        WEATHER["input_schema"] if names[0] == "get_weather" else {"type": "object"}
    )


def test_tool_choice_none_offers_no_tools() -> None:
    assert request(tools=[WEATHER], tool_choice={"type": "none"}).to_task().tools is None


def test_count_tokens_builds_the_same_conversation_without_max_tokens() -> None:
    fields = {"model": "smollm2", "system": "Be brief.", "tools": [WEATHER]}
    messages = [{"role": "user", "content": "hi"}]
    counted = CountTokensRequest.model_validate({**fields, "messages": messages}).to_task()
    sent = request(**fields).to_task()
    assert (counted.messages, counted.tools) == (sent.messages, sent.tools)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"max_tokens": None}, "max_tokens"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "user", "content": [{"type": "video"}]}]}, "video"),
        ({"messages": [{"role": "system", "content": "x"}]}, "role"),
        (
            {"messages": [{"role": "assistant", "content": [{"type": "image", "source": PNG}]}]},
            "cannot hold a 'image' block",
        ),
        ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "server tools"),
        ({"tools": [{"name": "x", "input_schema": {"type": "string"}}]}, '"type": "object"'),
        ({"tool_choice": {"type": "tool"}}, "name"),
        ({"temperature": 1.5}, "temperature"),
        ({"stop_sequences": ["s"] * 17}, "stop_sequences"),
    ],
)
def test_bad_requests_are_refused_saying_why(fields: dict, says: str) -> None:
    body = {"model": "smollm2", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    body = {key: value for key, value in body.items() if value is not None}
    with pytest.raises(ValidationError) as refused:
        MessagesRequest.model_validate(body)
    assert says in str(refused.value)


def test_an_image_url_is_refused_because_owl_fetches_nothing() -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}}
    with pytest.raises(InvalidImage, match="base64"):
        request(messages=[{"role": "user", "content": [image]}]).to_task()


def test_a_tool_choice_naming_an_unknown_tool_is_refused() -> None:
    with pytest.raises(InvalidPrompt, match="'nope'"):
        request(tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"}).to_task()


def test_text_may_not_smuggle_the_image_marker() -> None:
    with pytest.raises(InvalidPrompt, match="send images as images"):
        request(messages=[{"role": "user", "content": f"a {IMAGE_MARKER}"}]).to_task()
