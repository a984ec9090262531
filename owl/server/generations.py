"""The server's open generations: admission (max tokens, queue), metrics, graceful ends.

The serving core (owl/server/serving.py) calls `start_generations(request, model, prompt,
choices)` instead of `model.generate`: the same DeltaStreams come back, watched. A
generation counts from then until its stream ends; with every slot busy and OWL_MAX_QUEUE
generations already waiting, the next gets 429. At shutdown, open generations get time to
finish, then are stopped early — they still end with a final Delta (finish_reason "length"
and usage), so clients see a well-formed end of stream rather than a cut connection.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from typing import Any

from fastapi import Request

from owl.config import Settings
from owl.engine import Delta, Model, Occupancy, SamplingParams
from owl.engine.stream import DeltaStream
from owl.errors import ServerBusy, TokenLimitExceeded
from owl.server.metrics import Metrics

# What uvicorn's own graceful timeout keeps after streams are stopped, to send their ends.
SHUTDOWN_MARGIN_S = 2.0


class Generations:
    """The app's open generations, counted per model; one per app (no globals)."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.max_tokens = settings.max_tokens
        self.max_queue = settings.max_queue
        self.shutdown_timeout = settings.shutdown_timeout
        self.metrics = metrics
        self._lock = threading.RLock()  # __del__ of a stream may run inside a locked section
        self._open: weakref.WeakSet[WatchedStream] = weakref.WeakSet()
        self._running: dict[str, int] = {}
        self.models: weakref.WeakValueDictionary[str, Model] = weakref.WeakValueDictionary()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.draining = False
        metrics.watch(self.occupancy)

    # Admission, on the event loop:
    def start(
        self,
        request: Request,
        model: Model,
        prompt: list[int],
        choices: list[SamplingParams],
        **options: Any,
    ) -> list[WatchedStream]:
        """One generation of `prompt` per entry of `choices`: all admitted, or none (429).

        A request's choices are admitted together: one that got 429 half-admitted would
        leave generations running that nobody reads.
        """
        choices = [self._capped(params) for params in choices]
        wanted = len(choices)
        with self._lock:
            running = self._running.get(model.name, 0)
            room = model.slots + self.max_queue - running
            if wanted > room:
                asked = f"its {wanted} choices" if wanted > 1 else "it"
                raise ServerBusy(
                    f"model '{model.name}' is busy: {running} generations are running or "
                    f"waiting and there is room for {max(room, 0)} more, not {asked}; retry "
                    "after a moment" + (", or ask for fewer choices (n)" if wanted > 1 else "")
                )
            self._running[model.name] = running + wanted
            self.models[model.name] = model
        started = getattr(request.state, "started", None) or time.monotonic()
        streams: list[WatchedStream] = []
        group = object()  # this request's choices share the slots fairly with other requests
        try:
            for params in choices:
                stream = model.generate(prompt, params, group=group, **options)
                streams.append(WatchedStream(stream, owner=self, model=model.name, started=started))
        except BaseException:
            for watched in streams:
                watched.close()
            for _ in range(wanted - len(streams)):
                self._ended(model.name)
            raise
        with self._lock:
            self._open.update(streams)
        if self.draining:
            for watched in streams:
                watched.stop()
        return streams

    def _capped(self, params: SamplingParams) -> SamplingParams:
        cap = self.max_tokens
        if cap is None:
            return params
        if params.max_tokens is None:
            return params.model_copy(update={"max_tokens": cap})
        if params.max_tokens > cap:
            raise TokenLimitExceeded(
                f"max_tokens {params.max_tokens} is more than this server's cap of {cap} "
                f"tokens per request; ask for at most {cap}"
            )
        return params

    def _ended(self, model: str) -> None:
        with self._lock:
            self._running[model] = max(0, self._running.get(model, 0) - 1)

    def running(self, model: str) -> int:
        """Generations of `model` started and not yet ended (running or waiting)."""
        with self._lock:
            return self._running.get(model, 0)

    def occupancy(self) -> dict[str, Occupancy]:
        """The slots and queue of every model that has generated, by name (/metrics)."""
        return {name: model.occupancy() for name, model in list(self.models.items())}

    # Graceful shutdown:
    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop that serves the app; shutdown() may then be called from any thread."""
        self._loop = loop

    def shutdown(self, *, now: bool = False) -> None:
        """Let open generations finish until shortly before the graceful timeout, then stop.

        Safe from a signal handler: the work happens on the app's loop.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        grace = 0.0 if now else max(0.0, self.shutdown_timeout - SHUTDOWN_MARGIN_S)
        loop.call_soon_threadsafe(self._drain, grace)

    def _drain(self, grace: float) -> None:
        self.draining = True
        if grace > 0:
            asyncio.get_running_loop().call_later(grace, self._stop_all)
        else:
            self._stop_all()

    def _stop_all(self) -> None:
        with self._lock:
            open_streams = list(self._open)
        for stream in open_streams:
            stream.stop()


class WatchedStream:
    """A generation's DeltaStream, read as usual, that reports to its Generations."""

    def __init__(
        self, inner: DeltaStream[Delta], *, owner: Generations, model: str, started: float
    ) -> None:
        self._inner = inner
        self._owner = owner
        self._model = model
        self._started = started
        self._first = True
        self._released = False

    def stop(self) -> None:
        """End the generation early; the reader still gets its final Delta with usage."""
        self._inner.stop()

    def _release(self) -> None:
        if not self._released:
            self._released = True
            self._owner._ended(self._model)

    def _seen(self, delta: Delta) -> None:
        metrics = self._owner.metrics
        if self._first:
            self._first = False
            metrics.first_token(self._model, time.monotonic() - self._started)
        if delta.finish_reason is not None and delta.usage is not None:
            metrics.tokens(self._model, delta.usage.prompt_tokens, delta.usage.completion_tokens)

    def __aiter__(self) -> WatchedStream:
        return self

    async def __anext__(self) -> Delta:
        try:
            delta = await self._inner.__anext__()
        except BaseException:  # the end, a failure, or the reader cancelled
            self._release()
            raise
        self._seen(delta)
        return delta

    def __iter__(self) -> WatchedStream:
        return self

    def __next__(self) -> Delta:
        try:
            delta = next(self._inner)
        except BaseException:
            self._release()
            raise
        self._seen(delta)
        return delta

    @property
    def cancelled(self) -> bool:
        return self._inner.cancelled

    def close(self) -> None:
        self._inner.close()
        self._release()

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> WatchedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self._inner.close()  # nobody can read it any more: stop its generation
        self._release()

    def __getattr__(self, name: str) -> Any:  # anything else a route reads off the stream
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def start_generations(
    request: Request,
    model: Model,
    prompt: list[int],
    choices: list[SamplingParams],
    **options: Any,
) -> list[WatchedStream]:
    """`model.generate(prompt, params, **options)` for each of `choices`, under the
    server's limits (all admitted or none), watched."""
    generations: Generations = request.app.state.generations
    return generations.start(request, model, prompt, choices, **options)


def start_generation(
    request: Request, model: Model, prompt: list[int], params: SamplingParams, **options: Any
) -> WatchedStream:
    """One generation: start_generations with one choice."""
    return start_generations(request, model, prompt, [params], **options)[0]
