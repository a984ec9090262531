"""OpenAI's Responses API end to end: the real `owl serve`, the real `openai` client.

One server per module serves the embedded SmolLM2 (512-token context) with greedy decoding.
The model is too small to choose well, so the tests check what owl guarantees — the
conversation reaches the prompt, the stream adds up to the answer, the output follows the
schema or the tool's arguments, stored turns come back — not what the model says.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from tests.support.openai_client import MODEL, assert_error_shape

pytestmark = pytest.mark.slow

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 20},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city now.",
    "parameters": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 30},
            "unit": {"enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}
ASK = "What is the weather in Paris?"
INSTRUCTIONS = "You are Owl, a terse assistant who answers in one word. " * 6


def create(client: openai.OpenAI, **params: Any) -> Any:
    return client.responses.create(model=MODEL, temperature=0, **params)


def test_a_string_input_is_answered_with_usage(client: openai.OpenAI) -> None:
    response = create(client, input="Say hello to a new colleague.", max_output_tokens=30)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status in {"completed", "incomplete"}
    assert response.output_text.strip()
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant"


def test_instructions_and_items_reach_the_prompt(client: openai.OpenAI) -> None:
    items = [{"role": "user", "content": [{"type": "input_text", "text": "Name a color."}]}]
    plain = create(client, input=items, max_output_tokens=10)
    instructed = create(
        client,
        input=items,
        instructions=INSTRUCTIONS,
        max_output_tokens=10,
    )
    assert plain.output_text.strip() and instructed.output_text.strip()
    # The instructions are the system message, in place of the template's default one
    # (SmolLM2's is about 20 tokens): the prompt grows by the difference.
    assert instructed.usage.input_tokens > plain.usage.input_tokens + 30
    assert instructed.instructions == INSTRUCTIONS


def test_previous_response_id_continues_the_conversation(client: openai.OpenAI) -> None:
    first = create(client, input="My name is Ada and I live in Lyon.", max_output_tokens=20)
    fresh = create(client, input="Where do I live?", max_output_tokens=10, store=False)
    second = create(
        client, input="Where do I live?", previous_response_id=first.id, max_output_tokens=10
    )
    assert second.previous_response_id == first.id
    # The stored turn (its input and its answer) comes before the new input.
    earlier = second.usage.input_tokens - fresh.usage.input_tokens
    assert earlier >= first.usage.output_tokens + 8, (first.usage, fresh.usage, second.usage)
    # And a third turn carries both earlier ones.
    third = create(client, input="Thanks.", previous_response_id=second.id, max_output_tokens=5)
    assert third.usage.input_tokens > second.usage.input_tokens + second.usage.output_tokens


def test_a_stored_response_is_retrieved_and_deleted(client: openai.OpenAI) -> None:
    made = create(client, input="Say hi.", max_output_tokens=8)
    again = client.responses.retrieve(made.id)
    assert again.id == made.id and again.output_text == made.output_text
    client.responses.delete(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.delete(made.id)


def test_store_false_writes_nothing(client: openai.OpenAI) -> None:
    made = create(client, input="Say hi.", max_output_tokens=8, store=False)
    assert made.store is False and made.output_text
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as refused:
        create(client, input="Again.", previous_response_id=made.id, max_output_tokens=5)
    assert made.id in str(refused.value) and "store" in str(refused.value)


def test_the_stream_adds_up_to_the_answer(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL, input="Say hello to a new colleague.", temperature=0, max_output_tokens=30
    ) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    final = kinds[-1]
    assert final in {"response.completed", "response.incomplete"}
    assert kinds[-4:-1] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert deltas and set(kinds[4:-4]) == {"response.output_text.delta"}
    assert [event.sequence_number for event in events] == list(range(len(events)))
    response = events[-1].response
    assert "".join(deltas) == response.output_text
    assert events[-4].text == response.output_text
    assert client.responses.retrieve(response.id).output_text == response.output_text
    # The same answer as asked without a stream (greedy decoding).
    whole = create(client, input="Say hello to a new colleague.", max_output_tokens=30)
    assert whole.output_text == response.output_text


def test_a_function_call_and_its_output_round_trip(client: openai.OpenAI) -> None:
    first = create(client, input=ASK, tools=[WEATHER], tool_choice="required", max_output_tokens=80)
    (call,) = first.output
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.call_id and call.id != call.call_id
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])

    # The call's output goes back as an item; the model answers in words.
    output = {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 21}'}
    second = create(
        client,
        input=[output],
        previous_response_id=first.id,
        tools=[WEATHER],
        tool_choice="none",
        max_output_tokens=30,
    )
    assert second.output_text.strip()
    # The stored question and call come before the output: more than the output alone.
    alone = create(client, input=[output], tool_choice="none", max_output_tokens=5, store=False)
    assert second.usage.input_tokens > alone.usage.input_tokens + 15


def test_a_function_call_resent_as_items_is_accepted(client: openai.OpenAI) -> None:
    first = create(client, input=ASK, tools=[WEATHER], tool_choice="required", max_output_tokens=80)
    call = first.output[0]
    items = [
        {"role": "user", "content": ASK},
        call.model_dump(),
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21"},
    ]
    second = create(client, input=items, tools=[WEATHER], max_output_tokens=40)
    assert second.output  # a message or another call: either follows the tool grammar


def test_a_streamed_function_call_comes_with_its_arguments(client: openai.OpenAI) -> None:
    with client.responses.stream(
        model=MODEL,
        input=ASK,
        tools=[WEATHER],
        tool_choice="required",
        temperature=0,
        max_output_tokens=80,
    ) as stream:
        events = list(stream)
    kinds = [event.type for event in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    (call,) = events[-1].response.output
    assert call.type == "function_call"
    assert events[3].delta == events[4].arguments == call.arguments
    jsonschema.validate(json.loads(call.arguments), WEATHER["parameters"])


def test_the_stream_on_the_wire_names_each_event_and_ends_without_done(
    http: httpx.Client,
) -> None:
    body = {"model": MODEL, "input": "Say hi.", "stream": True, "max_output_tokens": 5}
    with http.stream("POST", "/v1/responses", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    names = [line.removeprefix("event: ") for line in lines[0::2]]
    data = [json.loads(line.removeprefix("data: ")) for line in lines[1::2]]
    assert all(line.startswith("event: ") for line in lines[0::2]), lines
    assert names == [event["type"] for event in data]
    assert names[-1] in {"response.completed", "response.incomplete"}


def test_an_image_part_reaches_the_model(http: httpx.Client) -> None:
    # The bundled model cannot see: the image got as far as the model, which says so.
    image = {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="}
    body = {"model": MODEL, "input": [{"role": "user", "content": [image]}]}
    error = assert_error_shape(http.post("/v1/responses", json=body), 400)
    assert "cannot see images" in error["message"]


def test_a_json_schema_format_is_followed(client: openai.OpenAI) -> None:
    response = create(
        client,
        input="Describe a person.",
        text={"format": {"type": "json_schema", "name": "person", "schema": PERSON}},
        max_output_tokens=120,
    )
    assert response.status == "completed"
    jsonschema.validate(json.loads(response.output_text), PERSON)
    assert response.text.format.type == "json_schema"


BAD_BODIES = {
    "no model": {"input": "hi"},
    "no input": {"model": MODEL},
    "an item owl does not take": {"model": MODEL, "input": [{"type": "reasoning", "id": "r"}]},
    "a role it does not know": {"model": MODEL, "input": [{"role": "robot", "content": "hi"}]},
    "a hosted tool": {"model": MODEL, "input": "hi", "tools": [{"type": "web_search"}]},
    "a temperature out of range": {"model": MODEL, "input": "hi", "temperature": 5},
    "json_schema without a schema": {
        "model": MODEL,
        "input": "hi",
        "text": {"format": {"type": "json_schema", "name": "x"}},
    },
    "a tool_choice naming no tool": {
        "model": MODEL,
        "input": "hi",
        "tools": [WEATHER],
        "tool_choice": {"type": "function", "name": "nope"},
    },
    "a function output without its call id": {
        "model": MODEL,
        "input": [{"type": "function_call_output", "output": "x"}],
    },
}


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_bad_requests_are_400(http: httpx.Client, body: dict[str, Any]) -> None:
    assert_error_shape(http.post("/v1/responses", json=body), 400)


def test_an_unknown_model_is_404(http: httpx.Client) -> None:
    response = http.post("/v1/responses", json={"model": "no-such-model", "input": "hi"})
    assert_error_shape(response, 404)


def test_an_unknown_previous_response_is_404_with_a_message(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "hi", "previous_response_id": "resp_missing"}
    error = assert_error_shape(http.post("/v1/responses", json=body), 404)
    assert "resp_missing" in error["message"] and error["code"] == "response_not_found"
