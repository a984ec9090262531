"""Ollama-compatible routes: /api/chat, /api/generate, /api/tags, /api/show, /api/pull, …

Translations onto the same engine calls as the OpenAI routes (Model.chat_tokens,
Model.text_tokens, Model.generate): Ollama's field names and NDJSON streams in and out,
nothing of its own. Errors come out as Ollama's `{"error": "..."}` (owl/server/errors.py).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, suppress
from functools import partial
from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from owl import __version__
from owl.engine import Delta, Model
from owl.engine.adapters import adapter_of
from owl.engine.stream import DeltaStream
from owl.errors import ModelNotFound, OwlError
from owl.formats import inspect
from owl.server import openai_tools
from owl.server.disconnect import unless_disconnected
from owl.server.generations import start_generation
from owl.server.ollama_models import ps_entry, rfc3339, show_body, tag_entry
from owl.server.ollama_pull import pull_ref, pull_statuses
from owl.server.ollama_schemas import (
    ChatRequest,
    GenerateRequest,
    PullRequest,
    ShowRequest,
    keep_alive_seconds,
    parse_body,
)
from owl.server.ollama_unsupported import (
    refuse_unsupported_chat,
    refuse_unsupported_generate,
)
from owl.server.pool import ModelPool
from owl.server.streaming import ClosingStreamingResponse

log = logging.getLogger("owl.server")
router = APIRouter()
NDJSON = "application/x-ndjson"
# Ollama's own answer to `GET /`; clients and apps probe it to see that a server is up.
RUNNING = "Ollama is running"
Piece = tuple[str, dict[str, Any] | None]  # (text, the final statistics or None)


def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


class _Timing:
    """Ollama's durations, in nanoseconds, of one request."""

    def __init__(self) -> None:
        self.started = time.monotonic_ns()
        self.loaded = self.started
        self.first: int | None = None

    def stats(self, delta: Delta) -> dict[str, Any]:
        end = time.monotonic_ns()
        first = self.first or end
        usage = delta.usage
        return {
            "done_reason": delta.finish_reason,
            "total_duration": end - self.started,
            "load_duration": self.loaded - self.started,
            "prompt_eval_count": usage.prompt_tokens if usage else 0,
            "prompt_eval_duration": first - self.loaded,
            "eval_count": usage.completion_tokens if usage else 0,
            "eval_duration": end - first,
        }


async def _pieces(deltas: DeltaStream[Delta], timing: _Timing) -> AsyncGenerator[Piece, None]:
    # Closing the stream stops generation, also when the client disconnects.
    with deltas:
        async for delta in deltas:
            if timing.first is None:
                timing.first = time.monotonic_ns()
            if delta.text:
                yield delta.text, None
            if delta.finish_reason is not None:
                yield "", timing.stats(delta)


def _line(item: dict[str, Any]) -> str:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")) + "\n"


async def _ndjson(items: AsyncGenerator[dict[str, Any], None]) -> Response:
    """Stream `items` as NDJSON once the first is ready.

    An error before the first item raises here, so it is answered with its own status, as
    Ollama does; one after that can only be a last `{"error": ...}` line.
    """
    try:
        first = await anext(items)
    except StopAsyncIteration:
        first = None

    async def lines() -> AsyncIterator[str]:
        async with aclosing(items):
            try:
                if first is not None:
                    yield _line(first)
                async for item in items:
                    yield _line(item)
            except OwlError as err:
                yield _line({"error": err.client_message()})
            except Exception as err:  # the stream has started: report in-band
                log.exception("streaming failed")
                yield _line({"error": f"generation failed: {type(err).__name__}"})

    return _NDJSONResponse(lines(), items)


class _NDJSONResponse(ClosingStreamingResponse):
    """Closes the items too: lines() never started (the client left first) cannot."""

    def __init__(
        self, lines: AsyncIterator[str], items: AsyncGenerator[dict[str, Any], None]
    ) -> None:
        super().__init__(lines, media_type=NDJSON)
        self._items = items

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            with anyio.CancelScope(shield=True):
                await self._items.aclose()


async def _answer(
    request: Request,
    pieces: AsyncGenerator[Piece, None],
    make: Callable[[str, dict | None], dict],
    *,
    stream: bool,
) -> Any:
    """The reply: an NDJSON stream of chunks, or one object with the whole text."""

    async def chunks() -> AsyncGenerator[dict[str, Any], None]:
        async with aclosing(pieces):
            async for text, final in pieces:
                yield make(text, final)

    if stream:
        return await _ndjson(chunks())
    text, final = await unless_disconnected(request, _whole(pieces))
    return make(text, final)


async def _whole(pieces: AsyncGenerator[Piece, None]) -> tuple[str, dict[str, Any] | None]:
    """All of a reply's text, and its final statistics."""
    parts, final = [], None
    async with aclosing(pieces):
        async for text, stats in pieces:
            parts.append(text)
            final = stats or final
    return "".join(parts), final


async def _loaded(request: Request, name: str, timing: _Timing, keep_alive: float | None) -> Model:
    model = await _pool(request).get(name, keep_alive=keep_alive)
    timing.loaded = time.monotonic_ns()
    return model


async def _unload(request: Request, name: str) -> None:
    """Ollama's unload request: the model unloads now, or when its running requests end."""
    pool = _pool(request)
    await run_in_threadpool(pool.manifest, name)  # an unknown model is a 404, as in Ollama
    with suppress(ModelNotFound):  # not loaded: nothing to do
        await pool.stop(name)


@router.post("/api/chat")
async def chat(request: Request) -> Any:
    body = await parse_body(request, ChatRequest)
    refuse_unsupported_chat(body)
    keep_alive = keep_alive_seconds(body.keep_alive)
    timing = _Timing()
    name = body.model.strip()

    def make(text: str, final: dict | None) -> dict[str, Any]:
        item = {
            "model": name,
            "created_at": rfc3339(),
            "message": {"role": "assistant", "content": text},
            "done": final is not None,
        }
        return {**item, **(final or {})}

    if not body.messages and keep_alive == 0:  # Ollama: an empty chat with 0 unloads it
        await _unload(request, body.model)
        return make("", {"done_reason": "unload"})
    model = await _loaded(request, body.model, timing, keep_alive)
    name = model.name  # the name it resolved to, as a reply's `model`
    if not body.messages:  # Ollama: an empty chat loads the model
        return make("", {"done_reason": "load"})
    messages = [message.as_template_input() for message in body.messages]
    tools = body.functions()
    if tools:  # as OpenAI's tool_choice "auto" (owl/server/openai_tools.py)
        grammar = await run_in_threadpool(partial(openai_tools.grammar, tools, may_answer=True))
        params = body.sampling(model, grammar=grammar)
        messages = openai_tools.with_tools(messages, tools, may_answer=True)
    else:
        params = await run_in_threadpool(body.sampling, model)  # `format`: a grammar to build
    prompt = await run_in_threadpool(model.chat_tokens, messages)
    deltas = start_generation(request, model, prompt, params)
    if tools:
        return await _tool_answer(request, _pieces(deltas, timing), make, stream=body.stream)
    return await _answer(request, _pieces(deltas, timing), make, stream=body.stream)


async def _tool_answer(
    request: Request,
    pieces: AsyncGenerator[Piece, None],
    make: Callable[[str, dict | None], dict],
    *,
    stream: bool,
) -> Any:
    """A reply that may call a tool: known only once the whole output is there, so it
    comes as one message (streamed: one chunk, then the done line)."""
    text, final = await unless_disconnected(request, _whole(pieces))
    content, calls = openai_tools.parse(text)
    reply = make(content or "", final)
    if calls:
        reply["message"]["tool_calls"] = [
            {
                "function": {
                    "name": call["function"]["name"],
                    "arguments": json.loads(call["function"]["arguments"]),
                }
            }
            for call in calls
        ]
    if not stream:
        return reply

    async def lines() -> AsyncGenerator[dict[str, Any], None]:
        message = {key: value for key, value in reply.items() if key not in (final or {})}
        yield {**message, "done": False}
        yield make("", final)

    return await _ndjson(lines())


@router.post("/api/generate")
async def generate(request: Request) -> Any:
    body = await parse_body(request, GenerateRequest)
    refuse_unsupported_generate(body)
    keep_alive = keep_alive_seconds(body.keep_alive)
    timing = _Timing()
    name = body.model.strip()

    def make(text: str, final: dict | None) -> dict[str, Any]:
        item = {
            "model": name,
            "created_at": rfc3339(),
            "response": text,
            "done": final is not None,
        }
        return {**item, **(final or {})}

    if not body.prompt and keep_alive == 0:  # Ollama: an empty prompt with 0 unloads it
        await _unload(request, body.model)
        return make("", {"done_reason": "unload"})
    model = await _loaded(request, body.model, timing, keep_alive)
    name = model.name  # the name it resolved to, as a reply's `model`
    if not body.prompt:  # Ollama: an empty prompt loads the model
        return make("", {"done_reason": "load"})
    params = await run_in_threadpool(body.sampling, model)  # `format`: a grammar to build
    if body.raw:  # the prompt is already formatted; like Ollama, `system` is not used
        prompt = await run_in_threadpool(model.text_tokens, body.prompt)
    else:
        messages = [{"role": "system", "content": body.system}] if body.system else []
        messages.append({"role": "user", "content": body.prompt})
        prompt = await run_in_threadpool(model.chat_tokens, messages)
    deltas = start_generation(request, model, prompt, params)
    return await _answer(request, _pieces(deltas, timing), make, stream=body.stream)


@router.head("/api/tags", include_in_schema=False)  # one operation per method in the schema
@router.get("/api/tags")
async def tags(request: Request) -> dict[str, Any]:
    store = _pool(request).store

    def entries() -> list[dict[str, Any]]:
        return [
            tag_entry(manifest, adapter_of=adapter_of(manifest, store=store))
            for manifest in store.list()
        ]

    return {"models": await run_in_threadpool(entries)}


@router.post("/api/show")
async def show(request: Request) -> dict[str, Any]:
    body = await parse_body(request, ShowRequest)
    pool = _pool(request)
    manifest = await run_in_threadpool(pool.manifest, body.model)
    path = await run_in_threadpool(pool.store.weights_path, manifest)
    info = await run_in_threadpool(inspect, path)
    return show_body(manifest, info)


@router.get("/api/ps")
async def ps(request: Request) -> dict[str, Any]:
    models = [
        ps_entry(
            entry.manifest,
            memory=entry.memory,
            expires_at=entry.expires_at(),
            context_length=entry.model.n_ctx,
            name=entry.name if "+" in entry.name else None,  # a base+adapter combination
        )
        for entry in _pool(request).entries()
    ]
    return {"models": models}


@router.delete("/api/ps/{name:path}")
async def stop(name: str, request: Request) -> dict[str, Any]:
    """owl's own (`owl stop`): unload a model now, or as soon as its requests end."""
    unloaded, pending = await _pool(request).stop(name)
    return {"model": name, "unloaded": unloaded, "unloading": pending}


@router.head("/api/version", include_in_schema=False)
@router.get("/api/version")
async def version() -> dict[str, str]:
    return {"version": __version__}


@router.post("/api/pull")
async def pull(request: Request) -> Any:
    body = await parse_body(request, PullRequest)
    ref = pull_ref(body.model, insecure=body.insecure)
    statuses = pull_statuses(ref, _pool(request), request.app.state.pulls)
    if body.stream:
        return await _ndjson(statuses)
    warnings = []
    async with aclosing(statuses):
        async for status in statuses:
            if status["status"].startswith("warning:"):
                warnings.append(status["status"])
    return {"status": "success", **({"warning": " ".join(warnings)} if warnings else {})}


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
async def root() -> PlainTextResponse:
    return PlainTextResponse(RUNNING)
