"""Choices of an OpenAI response: collecting, merging and their logprobs bodies.

A request with `n` > 1 runs n generations side by side in the batch; their Delta streams
are read together, each delta tagged with its choice's index.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from owl.engine import Delta, Model, Usage
from owl.engine.scheduler import TokenLogprob
from owl.engine.stream import DeltaStream


@dataclass
class Choice:
    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt: tuple[TokenLogprob | None, ...] | None = None

    def add(self, delta: Delta) -> None:
        self.text += delta.text
        self.logprobs += delta.logprobs
        if delta.prompt is not None:
            self.prompt = delta.prompt
        if delta.finish_reason is not None:
            self.finish_reason, self.usage = delta.finish_reason, delta.usage


async def merged(streams: list[DeltaStream[Delta]]) -> AsyncIterator[tuple[int, Delta]]:
    """Deltas of all `streams` as they come, with their stream's index. Closing the
    iterator closes every stream (and so stops their generations)."""
    queue: asyncio.Queue[tuple[int, Delta | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: DeltaStream[Delta]) -> None:
        try:
            async for delta in stream:
                await queue.put((index, delta))
        except BaseException as err:  # handed to the reader
            await queue.put((index, err))
        await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, stream)) for i, stream in enumerate(streams)]
    running = len(streams)
    try:
        while running:
            index, item = await queue.get()
            if item is None:
                running -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield index, item
    finally:
        for stream in streams:
            stream.close()
        for task in tasks:
            task.cancel()


async def collect(streams: list[DeltaStream[Delta]]) -> list[Choice]:
    choices = [Choice() for _ in streams]
    async for index, delta in merged(streams):
        choices[index].add(delta)
    return choices


def total_usage(choices: list[Choice]) -> Usage | None:
    if any(choice.usage is None for choice in choices):
        return None
    prompt = choices[0].usage.prompt_tokens  # type: ignore[union-attr]
    completion = sum(choice.usage.completion_tokens for choice in choices)  # type: ignore[union-attr]
    return Usage(prompt, completion)


def _token(model: Model, token: int) -> tuple[str, list[int]]:
    raw = model.backend.token_bytes(token) or model.backend.token_text(token).encode()
    return raw.decode("utf-8", "replace"), list(raw)


def chat_logprobs(model: Model, entries: list[TokenLogprob]) -> dict[str, Any]:
    """Chat's `logprobs` body: {"content": [{token, logprob, bytes, top_logprobs}]}."""
    content = []
    for entry in entries:
        text, raw = _token(model, entry.token)
        top = []
        for token, logprob in entry.top:
            alt_text, alt_raw = _token(model, token)
            top.append({"token": alt_text, "logprob": logprob, "bytes": alt_raw})
        content.append({"token": text, "logprob": entry.logprob, "bytes": raw, "top_logprobs": top})
    return {"content": content, "refusal": None}


def completion_logprobs(
    model: Model,
    entries: list[TokenLogprob | None],
    tokens: list[int],
    *,
    offset: int = 0,
) -> dict[str, Any]:
    """The completions API's legacy `logprobs` body: tokens, token_logprobs, top_logprobs
    (a dict per token), text_offset. `tokens` are the ids `entries` are for (the first
    prompt token has no entry: None)."""
    texts, token_logprobs, tops, offsets = [], [], [], []
    for token, entry in zip(tokens, entries, strict=True):
        text, _ = _token(model, token)
        texts.append(text)
        offsets.append(offset)
        offset += len(text)
        token_logprobs.append(None if entry is None else entry.logprob)
        tops.append(None if entry is None else {_token(model, t)[0]: lp for t, lp in entry.top})
    return {
        "tokens": texts,
        "token_logprobs": token_logprobs,
        "top_logprobs": tops,
        "text_offset": offsets,
    }
