"""OpenAI-compatible routes: /v1/models, /v1/chat/completions, /v1/completions.

Both generation routes are thin translations onto Model.generate; streaming and
non-streaming share the same Delta iterator.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from owl.engine import Delta, Usage
from owl.engine.stream import DeltaStream
from owl.errors import ModelNotFound, OwlError
from owl.server.errors import error_body
from owl.server.pool import ModelPool
from owl.server.schemas import ChatCompletionRequest, CompletionRequest, new_id, now
from owl.server.streaming import ClosingStreamingResponse, sse

log = logging.getLogger("owl.server")
router = APIRouter(prefix="/v1")
ChunkMaker = Callable[[str | None, str | None], dict[str, Any]]


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


async def _collect(deltas: DeltaStream[Delta]) -> tuple[str, Delta]:
    parts, last = [], None
    with deltas:  # if this task is cancelled (shutdown), stop generating
        async for delta in deltas:
            parts.append(delta.text)
            last = delta
    assert last is not None and last.finish_reason is not None
    return "".join(parts), last


async def _events(
    deltas: DeltaStream[Delta], make: ChunkMaker, *, include_usage: bool, first: dict | None = None
) -> AsyncIterator[str]:
    """SSE events for a stream: content chunks, a finishing chunk with usage, [DONE]."""
    if first is not None:
        yield sse(first)
    try:
        # Closing the stream stops generation, also when the client disconnects (the
        # response closes this generator; see ClosingStreamingResponse).
        with deltas:
            async for delta in deltas:
                if delta.text:
                    yield sse(make(delta.text, None))
                if delta.finish_reason is not None:
                    final = make(None, delta.finish_reason)
                    final["usage"] = _usage(delta.usage)
                    yield sse(final)
                    if include_usage:
                        usage = _usage(delta.usage)
                        yield sse({**make(None, None), "choices": [], "usage": usage})
    except OwlError as err:
        yield sse(error_body(str(err), status=err.http_status, code=err.code))
    except Exception as err:  # the stream has started: report in-band, never hang up silently
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
    manifests = await run_in_threadpool(_pool(request).store.list)
    return {"object": "list", "data": [_model_card(manifest) for manifest in manifests]}


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    pool = _pool(request)
    try:
        manifest = await run_in_threadpool(pool.manifest, model_id)
    except ModelNotFound:
        raise ModelNotFound(f"model '{model_id}' does not exist") from None
    return _model_card(manifest)


def _model_card(manifest: Any) -> dict[str, Any]:
    return {
        "id": manifest.display_name,
        "object": "model",
        "created": int(manifest.pulled_at.timestamp()),
        "owned_by": "owl",
    }


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    model = await _pool(request).get(body.model)
    params = body.sampling(model, max_tokens=body.max_completion_tokens)
    messages = [message.as_template_input() for message in body.messages]
    prompt = await run_in_threadpool(model.chat_tokens, messages)
    deltas = model.generate(prompt, params)
    ident, created = new_id("chatcmpl"), now()

    def chunk(text: str | None, finish: str | None) -> dict[str, Any]:
        delta = {"content": text} if text is not None else {}
        return {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model.name,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }

    if body.stream:
        first = chunk("", None)
        first["choices"][0]["delta"]["role"] = "assistant"
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _streaming_response(_events(deltas, chunk, include_usage=include_usage, first=first))
    text, last = await _collect(deltas)
    return {
        "id": ident,
        "object": "chat.completion",
        "created": created,
        "model": model.name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": last.finish_reason,
            }
        ],
        "usage": _usage(last.usage),
    }


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    model = await _pool(request).get(body.model)
    params = body.sampling(model)
    assert isinstance(body.prompt, str)
    prompt = await run_in_threadpool(model.text_tokens, body.prompt)
    deltas = model.generate(prompt, params)
    ident, created = new_id("cmpl"), now()

    def chunk(text: str | None, finish: str | None) -> dict[str, Any]:
        return {
            "id": ident,
            "object": "text_completion",
            "created": created,
            "model": model.name,
            "choices": [
                {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
            ],
        }

    if body.stream:
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return _streaming_response(_events(deltas, chunk, include_usage=include_usage))
    text, last = await _collect(deltas)
    response = chunk(text, last.finish_reason)
    response["usage"] = _usage(last.usage)
    return response
