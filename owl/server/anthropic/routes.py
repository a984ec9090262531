"""Anthropic's routes: POST /v1/messages (whole or streamed) and /v1/messages/count_tokens.

Translations, nothing more: a request becomes the serving core's Task (protocol.py), and
the Job's choice comes back as Anthropic's message, whole or as its named events
(stream.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from typing import Any

from fastapi import APIRouter, Request

from owl.server import serving
from owl.server.anthropic import stream
from owl.server.anthropic.protocol import (
    CountTokensRequest,
    MessageBody,
    MessagesRequest,
    TextContent,
    ToolUseContent,
    UsageBody,
)
from owl.server.choices import Choice
from owl.server.framing import framed
from owl.server.serving import Job

router = APIRouter(prefix="/v1")


def _ident(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def stop_reason(choice: Choice, *, called: bool) -> str:
    """Anthropic's stop_reason for how the choice ended."""
    if called:
        return "tool_use"
    if choice.finish_reason == "length":
        return "max_tokens"
    return "stop_sequence" if choice.stop is not None else "end_turn"


def _content(job: Job, choice: Choice) -> list[TextContent | ToolUseContent]:
    """The choice's blocks: its words (if any), then the tools it called."""
    reply = job.reply(choice)
    blocks: list[TextContent | ToolUseContent] = []
    if reply.content or not reply.tool_calls:
        blocks.append(TextContent(text=reply.content or ""))
    for call in reply.tool_calls:
        ident = f"toolu_{call.id.removeprefix('call_')}"
        blocks.append(ToolUseContent(id=ident, name=call.name or "", input=call.arguments))
    return blocks


def _message(job: Job, ident: str, choice: Choice | None) -> MessageBody:
    """The whole message, or (choice None) the message as its stream starts."""
    if choice is None:
        usage = UsageBody(input_tokens=len(job.prompt), output_tokens=0)
        return MessageBody(
            id=ident,
            model=job.model.name,
            content=[],
            stop_reason=None,
            stop_sequence=None,
            usage=usage,
        )
    content = _content(job, choice)
    called = any(isinstance(block, ToolUseContent) for block in content)
    return MessageBody(
        id=ident,
        model=job.model.name,
        content=content,
        stop_reason=stop_reason(choice, called=called),
        stop_sequence=None if called else choice.stop,
        usage=_usage(job, choice),
    )


def _usage(job: Job, choice: Choice) -> UsageBody:
    output = choice.usage.completion_tokens if choice.usage else 0
    return UsageBody(input_tokens=len(job.prompt), output_tokens=output)


@router.post("/messages")
async def messages(body: MessagesRequest, request: Request) -> Any:
    """A message, whole or (stream) as Anthropic's events."""
    task = body.to_task()
    cap = request.app.state.settings.max_tokens
    if cap and task.max_tokens and task.max_tokens > cap:
        # Anthropic's max_tokens is a required ceiling that clients set high (Claude Code
        # asks for tens of thousands): held to the server's cap, not refused; the answer's
        # stop_reason says "max_tokens" if the cap cut it.
        task = replace(task, max_tokens=cap)
    job = await serving.submit(request, task)
    ident = _ident("msg")
    if body.stream:
        events = _events(job, ident) if job.task.tools is None else _whole_events(job, ident)
        return await framed(request, events, stream.ANTHROPIC_SSE)
    (choice,) = await serving.collect(request, job)
    return _message(job, ident, choice).body()


@router.post("/messages/count_tokens")
async def count_tokens(body: CountTokensRequest, request: Request) -> dict[str, int]:
    """{"input_tokens"}: the prompt's tokens, as /v1/messages would evaluate them."""
    return {"input_tokens": await serving.count_prompt(request, body.to_task())}


async def _events(job: Job, ident: str) -> AsyncIterator[dict[str, Any]]:
    """The text, streamed as it is generated, in one text block."""
    yield stream.message_start(_message(job, ident, None))
    yield stream.block_start(0, TextContent(text=""))
    yield stream.PING
    choice = Choice()
    async with aclosing(job.deltas()) as deltas:
        async for _, delta in deltas:
            choice.add(delta)
            if delta.text:
                yield stream.text_delta(0, delta.text)
    yield stream.block_stop(0)
    yield _end(job, choice, called=False)
    yield stream.MESSAGE_STOP


async def _whole_events(job: Job, ident: str) -> AsyncIterator[dict[str, Any]]:
    """With tools offered, a call is known only once its JSON is whole: each block is sent
    whole, once the choice has ended."""
    yield stream.message_start(_message(job, ident, None))
    yield stream.PING
    (choice,) = await job.choices()
    message = _message(job, ident, choice)
    for index, block in enumerate(message.content):
        for event in stream.block_events(index, block):
            yield event
    called = message.stop_reason == "tool_use"
    yield _end(job, choice, called=called)
    yield stream.MESSAGE_STOP


def _end(job: Job, choice: Choice, *, called: bool) -> dict[str, Any]:
    usage = _usage(job, choice)
    return stream.message_delta(
        stop_reason(choice, called=called),
        None if called else choice.stop,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
    )
