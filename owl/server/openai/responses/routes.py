"""OpenAI's Responses API: POST /v1/responses, GET and DELETE /v1/responses/{id}.

A translation, nothing more: the request (and the stored turns it continues, store.py)
becomes one serving-core Task; the Job's choice comes back as output items, whole or as
named server-sent events (`event: response.output_text.delta`, …) numbered in order.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from owl.errors import OwlError
from owl.server import serving
from owl.server.choices import Choice
from owl.server.errors import error_body
from owl.server.framing import framed
from owl.server.openai.image_stream import IMAGE_SSE
from owl.server.openai.responses.protocol import (
    ITEMS,
    CallBody,
    Item,
    MessageBody,
    OutputItem,
    OutputText,
    ResponseObject,
    ResponsesRequest,
    UsageBody,
)
from owl.server.openai.responses.store import ResponseStore, StoredResponse
from owl.server.serving import Job, Reply

router = APIRouter(prefix="/v1")


def _error_event(message: str, err: OwlError | None) -> dict[str, Any]:
    error = error_body(
        message,
        status=500 if err is None else err.http_status,
        code=None if err is None else err.code,
    )["error"]
    # OpenAI's error event: the error's fields at the top, its type "error". The stream's
    # numbering is not known here; an error ends the stream, so nothing follows it.
    return {**error, "type": "error", "sequence_number": 0}


# Named events like the image stream's, ended by the last event rather than [DONE].
RESPONSES_SSE = dataclasses.replace(IMAGE_SSE, error=_error_event)


def _store(request: Request) -> ResponseStore:
    return ResponseStore(request.app.state.settings.home)


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class _Turn:
    """One request's response: its id, its conversation, and its bodies."""

    body: ResponsesRequest
    job: Job
    items: list[Item]  # the conversation it answers, earlier turns first
    ident: str
    created: int

    def response(self, output: list[OutputItem], choice: Choice | None) -> ResponseObject:
        """The response object: in progress (no choice yet), completed, or incomplete
        (cut at max_output_tokens)."""
        status, details, usage = "in_progress", None, None
        if choice is not None:
            status = "incomplete" if choice.finish_reason == "length" else "completed"
            if status == "incomplete":
                details = {"reason": "max_output_tokens"}
            usage = _usage(self.job, choice)
        return ResponseObject(
            id=self.ident,
            created_at=self.created,
            status=status,
            incomplete_details=details,
            model=self.job.model.name,
            output=output,
            usage=usage,
            **self.body.echoed(),
        )

    def output(self, reply: Reply) -> list[OutputItem]:
        """The reply as output items: its words as a message, each tool call as a call."""
        status = "incomplete" if reply.finish_reason == "length" else "completed"
        items: list[OutputItem] = []
        if reply.content is not None or not reply.tool_calls:
            text = OutputText(text=reply.content or "")
            items.append(MessageBody(id=_new_id("msg"), status=status, content=[text]))
        items.extend(
            CallBody(
                id=_new_id("fc"),
                call_id=call.id,
                name=call.name or "",
                arguments=json.dumps(call.arguments),
                status="completed",
            )
            for call in reply.tool_calls
        )
        return items

    async def save(self, request: Request, response: ResponseObject) -> None:
        """Store the turn for previous_response_id and GET, unless `store` is false."""
        if not self.body.store:
            return
        stored = StoredResponse(
            id=self.ident,
            model=self.job.model.name,
            input=ITEMS.dump_python(self.items, mode="json", exclude_none=True),
            output=[item.body() for item in response.output],
            body=response.body(),
        )
        await run_in_threadpool(_store(request).save, stored)


def _usage(job: Job, choice: Choice) -> UsageBody:
    usage = choice.usage
    prompt = usage.prompt_tokens if usage else len(job.prompt)
    completion = usage.completion_tokens if usage else 0
    return UsageBody(
        input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion
    )


@router.post("/responses")
async def create_response(body: ResponsesRequest, request: Request) -> Any:
    items = body.items()
    if body.previous_response_id is not None:
        previous = await run_in_threadpool(_store(request).get, body.previous_response_id)
        items = [*ITEMS.validate_python(previous.conversation()), *items]
    task = body.to_task(items)
    job = await serving.submit(request, task)
    turn = _Turn(body=body, job=job, items=items, ident=_new_id("resp"), created=int(time.time()))
    if body.stream:
        return await framed(request, _events(turn, request), RESPONSES_SSE)
    (choice,) = await serving.collect(request, job)
    response = turn.response(turn.output(job.reply(choice)), choice)
    await turn.save(request, response)
    return response.body()


@router.get("/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> dict[str, Any]:
    stored = await run_in_threadpool(_store(request).get, response_id)
    return stored.body


@router.delete("/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> dict[str, Any]:
    await run_in_threadpool(_store(request).delete, response_id)
    return {"id": response_id, "object": "response", "deleted": True}


async def _events(turn: _Turn, request: Request) -> AsyncIterator[dict[str, Any]]:
    """The stream: created, in_progress, each output item's events, then completed (or
    incomplete), every event numbered."""
    numbers = itertools.count()

    def event(kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "sequence_number": next(numbers), **fields}

    yield event("response.created", response=turn.response([], None).body())
    yield event("response.in_progress", response=turn.response([], None).body())
    job = turn.job
    if job.task.tools is None:
        message = MessageBody(id=_new_id("msg"), status="in_progress", content=[])
        for kind, fields in _opened(message, 0):
            yield event(kind, **fields)
        choice = Choice()
        async with aclosing(job.deltas()) as deltas:
            async for _, delta in deltas:
                choice.add(delta)
                if delta.text:
                    yield event(
                        "response.output_text.delta",
                        item_id=message.id,
                        output_index=0,
                        content_index=0,
                        delta=delta.text,
                        logprobs=[],
                    )
        status = "incomplete" if choice.finish_reason == "length" else "completed"
        done = message.model_copy(
            update={"status": status, "content": [OutputText(text=choice.text)]}
        )
        output: list[OutputItem] = [done]
        for kind, fields in _closed(done, 0):
            yield event(kind, **fields)
    else:
        # A tool call is known only once its JSON is complete: each item comes whole.
        (choice,) = await job.choices()
        output = turn.output(job.reply(choice))
        for index, item in enumerate(output):
            for kind, fields in _whole(item, index):
                yield event(kind, **fields)
    response = turn.response(output, choice)
    await turn.save(request, response)
    final = "response.incomplete" if response.status == "incomplete" else "response.completed"
    yield event(final, response=response.body())


Events = Iterator[tuple[str, dict[str, Any]]]


def _opened(message: MessageBody, index: int) -> Events:
    """A message added, in progress, with its one (empty) text part."""
    yield "response.output_item.added", {"output_index": index, "item": message.body()}
    where = {"item_id": message.id, "output_index": index, "content_index": 0}
    yield "response.content_part.added", {**where, "part": OutputText(text="").body()}


def _closed(message: MessageBody, index: int) -> Events:
    """A message's text done, its part done, the item done."""
    part = message.content[0]
    where = {"item_id": message.id, "output_index": index, "content_index": 0}
    yield "response.output_text.done", {**where, "text": part.text, "logprobs": []}
    yield "response.content_part.done", {**where, "part": part.body()}
    yield "response.output_item.done", {"output_index": index, "item": message.body()}


def _whole(item: OutputItem, index: int) -> Events:
    """The events of an output item known whole: added, its text or arguments, done."""
    if isinstance(item, MessageBody):
        yield from _opened(item.model_copy(update={"status": "in_progress", "content": []}), index)
        text = item.content[0].text
        if text:
            where = {"item_id": item.id, "output_index": index, "content_index": 0}
            yield "response.output_text.delta", {**where, "delta": text, "logprobs": []}
        yield from _closed(item, index)
        return
    opened = item.model_copy(update={"status": "in_progress", "arguments": ""})
    yield "response.output_item.added", {"output_index": index, "item": opened.body()}
    where = {"item_id": item.id, "output_index": index}
    yield "response.function_call_arguments.delta", {**where, "delta": item.arguments}
    yield (
        "response.function_call_arguments.done",
        {**where, "name": item.name, "arguments": item.arguments},
    )
    yield "response.output_item.done", {"output_index": index, "item": item.body()}
