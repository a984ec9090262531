"""OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions.

Both generation routes are thin translations onto Model.generate; streaming and
non-streaming share the same Delta iterator.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from owl.engine import Delta, Model, SamplingParams, Usage
from owl.engine.adapters import adapter_of
from owl.engine.scheduler import TokenLogprob
from owl.engine.stream import DeltaStream
from owl.errors import InvalidPrompt, ModelNotFound, OwlError
from owl.server import openai_tools
from owl.server.disconnect import unless_disconnected
from owl.server.errors import error_body
from owl.server.generations import start_generations
from owl.server.openai_choices import (
    Choice,
    chat_logprobs,
    collect,
    completion_logprobs,
    merged,
    total_usage,
)
from owl.server.pool import ModelPool
from owl.server.schemas import ChatCompletionRequest, CompletionRequest, new_id, now
from owl.server.streaming import ClosingStreamingResponse, sse

log = logging.getLogger("owl.server")
router = APIRouter(prefix="/v1")


def _pool(request: Request) -> ModelPool:
    return request.app.state.pool


def _usage(usage: Usage | None) -> dict[str, int] | None:
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


async def _guarded(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """`events`, then [DONE]. Once the stream has started a failure can only be reported
    in-band: as an error event, never a silent hang-up. Closing this (the client went
    away; see ClosingStreamingResponse) closes `events`, which stops the generations."""
    try:
        async with aclosing(events):
            async for event in events:
                yield event
    except OwlError as err:
        yield sse(error_body(err.client_message(), status=err.http_status, code=err.code))
    except Exception as err:
        log.exception("generation failed")
        yield sse(error_body(f"generation failed: {type(err).__name__}", status=500, code=None))
    yield sse("[DONE]")


def _streaming_response(events: AsyncIterator[str]) -> ClosingStreamingResponse:
    return ClosingStreamingResponse(
        events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    store = _pool(request).store

    def cards() -> list[dict[str, Any]]:
        return [
            _model_card(manifest, adapter_of=adapter_of(manifest, store=store))
            for manifest in store.list()
        ]

    return {"object": "list", "data": await run_in_threadpool(cards)}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    pool = _pool(request)
    try:
        manifest = await run_in_threadpool(pool.manifest, model_id)
    except ModelNotFound:
        raise ModelNotFound(f"model '{model_id}' does not exist") from None
    return _model_card(manifest)


def _model_card(manifest: Any, *, adapter_of: str | None = None) -> dict[str, Any]:
    card = {
        "id": manifest.display_name,
        "object": "model",
        "created": int(manifest.pulled_at.timestamp()),
        "owned_by": "owl",
    }
    if adapter_of is not None:  # a LoRA adapter: ask for it as "BASE+ADAPTER" or by itself
        card["owned_by"] = f"lora adapter of {adapter_of}" if adapter_of else "lora adapter"
        card["adapter_of"] = adapter_of
    return card


def _seeded(params: SamplingParams, index: int) -> SamplingParams:
    # n choices from one seed must differ yet be reproducible: choice i samples with seed+i.
    if params.seed is None or index == 0:
        return params
    return params.model_copy(update={"seed": (params.seed + index) % (2**32 - 1)})


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    model = await _pool(request).get(body.model)
    # Off the event loop: a schema's grammar takes a while to build (bounded: grammar.py).
    grammar, tools, may_answer = await run_in_threadpool(body.output_grammar)
    params = body.sampling(
        model,
        max_tokens=body.max_completion_tokens,
        grammar=grammar,
        logprobs=body.logprobs_wanted(),
    )
    messages = [message.as_template_input() for message in body.messages]
    if tools:
        messages = openai_tools.with_tools(messages, tools, may_answer=may_answer)
    prompt = await run_in_threadpool(model.chat_tokens, messages)
    seeded = [_seeded(params, i) for i in range(body.n)]
    streams = start_generations(request, model, prompt, seeded, cache_prompt=body.cache_prompt)
    ident, created = new_id("chatcmpl"), now()

    def chunk(text: str | None, finish: str | None, index: int = 0) -> dict[str, Any]:
        delta = {"content": text} if text is not None else {}
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model.name,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }

    def message(choice: Choice) -> tuple[dict[str, Any], str | None]:
        if not tools:
            return {"role": "assistant", "content": choice.text}, choice.finish_reason
        content, calls = openai_tools.parse(choice.text)
        body_: dict[str, Any] = {"role": "assistant", "content": content}
        if calls:
            body_["tool_calls"] = calls
            return body_, "tool_calls"
        return body_, choice.finish_reason

    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if body.stream and not tools:
        return _streaming_response(
            _guarded(_chat_events(streams, chunk, model=model, include_usage=include_usage))
        )
    if body.stream:
        # A tool call is known only once its JSON is complete: stream each choice whole.
        return _streaming_response(
            _guarded(_whole_chat_events(streams, chunk, message, include_usage=include_usage))
        )
    choices = await unless_disconnected(request, collect(streams))
    answers = []
    for index, choice in enumerate(choices):
        answer, finish = message(choice)
        logprobs = chat_logprobs(model, choice.logprobs) if body.logprobs else None
        answers.append(
            {"index": index, "message": answer, "logprobs": logprobs, "finish_reason": finish}
        )
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model.name,
        "choices": answers,
        "usage": _usage(total_usage(choices)),
    }


async def _chat_events(
    streams: list[DeltaStream[Delta]], make: Any, *, model: Model, include_usage: bool
) -> AsyncIterator[str]:
    """SSE events for streamed chat choices: a role chunk each, content chunks (with their
    logprobs), a finishing chunk each, usage."""
    for index in range(len(streams)):
        first = make("", None, index)
        first["choices"][0]["delta"]["role"] = "assistant"
        yield sse(first)
    choices = [Choice() for _ in streams]
    async for index, delta in merged(streams):
        choices[index].add(delta)
        if delta.text or delta.logprobs:
            event = make(delta.text, None, index)
            if delta.logprobs:
                event["choices"][0]["logprobs"] = chat_logprobs(model, list(delta.logprobs))
            yield sse(event)
        if delta.finish_reason is not None:
            final = make(None, delta.finish_reason, index)
            final["usage"] = _usage(delta.usage)
            yield sse(final)
    if include_usage:
        yield sse({**make(None, None), "choices": [], "usage": _usage(total_usage(choices))})


async def _whole_chat_events(
    streams: list[DeltaStream[Delta]], make: Any, message: Any, *, include_usage: bool
) -> AsyncIterator[str]:
    choices = await collect(streams)
    for index, choice in enumerate(choices):
        answer, finish = message(choice)
        event = make(None, None, index)
        event["choices"][0]["delta"] = dict(answer)
        if "tool_calls" in answer:
            event["choices"][0]["delta"]["tool_calls"] = [
                {"index": i, **call} for i, call in enumerate(answer["tool_calls"])
            ]
        yield sse(event)
        yield sse(make(None, finish, index))
    if include_usage:
        yield sse({**make(None, None), "choices": [], "usage": _usage(total_usage(choices))})


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    model = await _pool(request).get(body.model)
    if body.max_tokens == 0 and not body.echo:
        raise InvalidPrompt("max_tokens 0 only makes sense with echo (to score the prompt)")
    params = body.sampling(model, logprobs=body.logprobs)
    assert isinstance(body.prompt, str)
    prompt = await run_in_threadpool(model.text_tokens, body.prompt)
    score = body.logprobs if body.echo and body.logprobs is not None else None
    streams = start_generations(
        request,
        model,
        prompt,
        [_seeded(params, i) for i in range(body.n)],
        prompt_logprobs=score,
        sample=body.max_tokens != 0,
        cache_prompt=body.cache_prompt,
    )
    ident, created = new_id("cmpl"), now()

    def chunk(text: str | None, finish: str | None, index: int = 0) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": model.name,
            "choices": [
                {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
            ],
        }

    if body.stream:
        events = _completion_events(streams, chunk, model=model, body=body, prompt=prompt)
        return _streaming_response(_guarded(events))
    choices = await unless_disconnected(request, collect(streams))
    answers = []
    for index, choice in enumerate(choices):
        answer = chunk(None, choice.finish_reason, index)["choices"][0]
        answer["text"] = (body.prompt if body.echo else "") + choice.text
        answer["logprobs"] = _completion_logprobs(model, body, prompt, choice)
        answers.append(answer)
    response = chunk(None, None)
    response["choices"] = answers
    response["usage"] = _usage(total_usage(choices))
    return response


def _completion_logprobs(
    model: Model, body: CompletionRequest, prompt: list[int], choice: Choice
) -> dict[str, Any] | None:
    if body.logprobs is None:
        return None
    entries: list[TokenLogprob | None] = list(choice.logprobs)
    tokens = [entry.token for entry in choice.logprobs]
    if body.echo and choice.prompt is not None:
        entries = [*choice.prompt, *entries]
        tokens = [*prompt, *tokens]
    return completion_logprobs(model, entries, tokens)


async def _completion_events(
    streams: list[DeltaStream[Delta]],
    make: Any,
    *,
    model: Model,
    body: CompletionRequest,
    prompt: list[int],
) -> AsyncIterator[str]:
    """Completion chunks per choice (echoed prompt first, logprobs per chunk), usage."""
    choices = [Choice() for _ in streams]
    if body.echo and body.logprobs is None:
        for index in range(len(streams)):
            yield sse(make(body.prompt, None, index))
    async for index, delta in merged(streams):
        choices[index].add(delta)
        if delta.prompt is not None:
            event = make(body.prompt, None, index)
            event["choices"][0]["logprobs"] = completion_logprobs(model, list(delta.prompt), prompt)
            yield sse(event)
        if delta.text or delta.logprobs:
            event = make(delta.text, None, index)
            if body.logprobs is not None:
                entries = list(delta.logprobs)
                event["choices"][0]["logprobs"] = completion_logprobs(
                    model, list(entries), [entry.token for entry in entries]
                )
            yield sse(event)
        if delta.finish_reason is not None:
            final = make(None, delta.finish_reason, index)
            final["usage"] = _usage(delta.usage)
            yield sse(final)
    if body.stream_options and body.stream_options.include_usage:
        yield sse({**make(None, None), "choices": [], "usage": _usage(total_usage(choices))})
