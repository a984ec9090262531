"""A request's choices: its generations' Delta streams read together, and what each gave.

A request with `n` > 1 runs n generations side by side in the batch; their streams are
read together, each delta tagged with its choice's index.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from owl.engine import Delta, TokenLogprob, Usage
from owl.engine.stream import DeltaStream


@dataclass
class Choice:
    """One generation's text, logprobs and end, as its deltas arrive."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt: tuple[TokenLogprob | None, ...] | None = None
    ended_ns: int | None = None  # when its last delta came (Ollama's durations)
    stop: str | None = None  # the stop string that ended it, if one did

    def add(self, delta: Delta) -> None:
        self.text += delta.text
        self.logprobs += delta.logprobs
        if delta.prompt is not None:
            self.prompt = delta.prompt
        if delta.finish_reason is not None:
            self.finish_reason, self.usage = delta.finish_reason, delta.usage
            self.stop = delta.stop
            self.ended_ns = time.monotonic_ns()


async def merged(streams: Sequence[DeltaStream[Delta]]) -> AsyncIterator[tuple[int, Delta]]:
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


def total_usage(choices: Sequence[Choice]) -> Usage | None:
    """The request's usage: the prompt once, every choice's completion."""
    if any(choice.usage is None for choice in choices):
        return None
    prompt = choices[0].usage.prompt_tokens  # type: ignore[union-attr]
    completion = sum(choice.usage.completion_tokens for choice in choices)  # type: ignore[union-attr]
    return Usage(prompt, completion)
