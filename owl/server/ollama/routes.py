"""Ollama's routes: /api/chat, /api/generate, /api/embed, /api/embeddings, /api/version, /.

Translations onto the serving core (owl/server/serving.py, owl/server/embedding.py):
Ollama's field names and NDJSON streams in and out, nothing of its own. The store's
routes (/api/tags, /api/show, /api/ps) are in models.py, /api/pull in pull.py. Errors
come out as Ollama's `{"error": "..."}` (owl/server/errors.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import aclosing, suppress
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from owl import __version__
from owl.errors import ModelNotFound
from owl.server import serving
from owl.server.choices import Choice
from owl.server.embedding import EmbedTask, check_count, embed
from owl.server.framing import NDJSON, framed
from owl.server.ollama import models, pull
from owl.server.ollama.models import rfc3339
from owl.server.ollama.protocol import (
    ChatReply,
    ChatRequest,
    Done,
    EmbeddingReply,
    EmbedReply,
    EmbedRequest,
    FunctionCallBody,
    GenerateReply,
    GenerateRequest,
    MessageBody,
    ToolCallBody,
    keep_alive_seconds,
    parse_body,
)
from owl.server.ollama.unsupported import refuse_unsupported_chat, refuse_unsupported_generate
from owl.server.serving import Job

router = APIRouter()
router.include_router(models.router)
router.include_router(pull.router)
# Ollama's own answer to `GET /`; clients and apps probe it to see that a server is up.
RUNNING = "Ollama is running"


def _done(job: Job, choice: Choice) -> Done | None:
    """Ollama's end of a reply: its reason, token counts and durations in nanoseconds."""
    if choice.ended_ns is None:
        return None
    end = choice.ended_ns
    first = job.first_ns or end
    usage = choice.usage
    return Done(
        done_reason=choice.finish_reason,
        total_duration=end - job.started_ns,
        load_duration=job.loaded_ns - job.started_ns,
        prompt_eval_count=usage.prompt_tokens if usage else 0,
        prompt_eval_duration=first - job.loaded_ns,
        eval_count=usage.completion_tokens if usage else 0,
        eval_duration=end - first,
    )


@dataclass(frozen=True)
class _Replies:
    """A route's replies: Ollama's chat messages or generate's responses."""

    chat: bool
    model: str

    def reply(self, text: str, done: Done | None, calls: list[ToolCallBody] | None = None) -> Any:
        common = {"model": self.model, "created_at": rfc3339(), "done": done}
        if not self.chat:
            return GenerateReply.part(response=text, **common)
        tools = {} if calls is None else {"tool_calls": calls}
        return ChatReply.part(message=MessageBody(content=text, **tools), **common)


async def _unload(request: Request, name: str) -> None:
    """Ollama's unload request: the model unloads now, or when its running requests end."""
    pool = serving.pool_of(request)
    await run_in_threadpool(pool.manifest, name)  # an unknown model is a 404, as in Ollama
    with suppress(ModelNotFound):  # not loaded: nothing to do
        await pool.stop(name)


async def _answer(
    request: Request, body: ChatRequest | GenerateRequest, *, chat: bool, empty: bool
) -> Any:
    """The reply to a chat or generate request: streamed as NDJSON, or one object."""
    started = time.monotonic_ns()
    keep_alive = keep_alive_seconds(body.keep_alive)
    replies = _Replies(chat, body.model.strip())
    if empty and keep_alive == 0:  # Ollama: an empty request with keep_alive 0 unloads
        await _unload(request, body.model)
        return replies.reply("", Done(done_reason="unload")).body()
    model = await serving.load(request, body.model, keep_alive=keep_alive)
    replies = _Replies(replies.chat, model.name)  # the name it resolved to, as `model`
    if empty:  # Ollama: an empty request loads the model
        return replies.reply("", Done(done_reason="load")).body()
    task = body.to_task()
    job = await serving.prepare(request, task, model, started_ns=started)
    if task.tools is not None:
        return await _tool_answer(request, job, replies, stream=body.stream)
    if body.stream:
        return await framed(request, _chunks(job, replies), NDJSON)
    choice = (await serving.collect(request, job))[0]
    return replies.reply(choice.text, _done(job, choice)).body()


async def _chunks(job: Job, replies: _Replies) -> AsyncIterator[Any]:
    choice = Choice()
    async with aclosing(job.deltas()) as deltas:
        async for _, delta in deltas:
            choice.add(delta)
            if delta.text:
                yield replies.reply(delta.text, None)
            if delta.finish_reason is not None:
                yield replies.reply("", _done(job, choice))


async def _tool_answer(request: Request, job: Job, replies: _Replies, *, stream: bool) -> Any:
    """A reply that may call a tool: known only once the whole output is there, so it
    comes as one message (streamed: one chunk, then the done line)."""
    choice = (await serving.collect(request, job))[0]
    reply = job.reply(choice)
    calls = [
        ToolCallBody(function=FunctionCallBody(name=call.name, arguments=call.arguments))
        for call in reply.tool_calls
    ]
    done = _done(job, choice)
    if not stream:
        return replies.reply(reply.content or "", done, calls or None).body()

    async def lines() -> AsyncIterator[Any]:
        yield replies.reply(reply.content or "", None, calls or None)
        yield replies.reply("", done)

    return await framed(request, lines(), NDJSON)


@router.post("/api/chat")
async def chat(request: Request) -> Any:
    body = await parse_body(request, ChatRequest)
    refuse_unsupported_chat(body)
    return await _answer(request, body, chat=True, empty=not body.messages)


@router.post("/api/generate")
async def generate(request: Request) -> Any:
    body = await parse_body(request, GenerateRequest)
    refuse_unsupported_generate(body)
    return await _answer(request, body, chat=False, empty=not body.prompt)


async def _embed(request: Request, body: EmbedRequest, texts: list[str], *, normalize: bool) -> Any:
    # Ollama truncates inputs longer than the context unless told not to.
    task = EmbedTask(
        model=body.model,
        texts=texts,
        normalize=normalize,
        truncate=body.truncate is not False,
        dimensions=body.dimensions,
        keep_alive=keep_alive_seconds(body.keep_alive),
    )
    return await embed(request, task)


@router.post("/api/embed")
async def ollama_embed(request: Request) -> dict[str, Any]:
    body = await parse_body(request, EmbedRequest)
    if isinstance(body.input, list):
        texts = body.input
        check_count(len(texts) or 1)  # an empty list only loads the model, as in Ollama
    else:
        texts = [body.input] if body.input else []
    result = await _embed(request, body, texts, normalize=True)
    return EmbedReply(
        model=body.model.strip(),
        embeddings=result.embeddings.vectors,
        total_duration=result.total_ns,
        load_duration=result.load_ns,
        prompt_eval_count=result.embeddings.total_tokens,
    ).body()


@router.post("/api/embeddings")
async def ollama_embeddings(request: Request) -> dict[str, Any]:
    """The older form: one `prompt`, a vector not normalized (as Ollama's)."""
    body = await parse_body(request, EmbedRequest)
    texts = [body.prompt] if body.prompt else []
    vectors = (await _embed(request, body, texts, normalize=False)).embeddings.vectors
    return EmbeddingReply(embedding=vectors[0] if vectors else []).body()


@router.head("/api/version", include_in_schema=False)
@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root() -> PlainTextResponse:
    return PlainTextResponse(RUNNING)
