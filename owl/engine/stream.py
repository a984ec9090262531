"""DeltaStream: a generation that runs on the engine thread, read sync or async.

Why one engine thread: llama.cpp (built with OpenMP) slows to a third once decodes come
from more than one thread of a process, and a generation that waits for its reader at
every token loses a thread hand-off per token. So the engine thread runs the whole
generation ahead of the reader, and readers — the CLI's loop, the server's event loop —
only take finished Deltas from a queue. The single thread also serializes generations:
a second request waits in its queue, holding no thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Executor
from typing import Generic, TypeVar

T = TypeVar("T")


class _End:
    pass


class _Failure:
    def __init__(self, error: BaseException) -> None:
        self.error = error


class DeltaStream(Generic[T]):
    """Items produced by `produce()` on `worker`; iterate with `for` or `async for`.

    `close()` (or leaving an `async for`/`with` early) stops the producer at its next item.
    """

    def __init__(
        self,
        worker: Executor | None = None,
        produce: Callable[[], Generator[T, None, None]] | None = None,
    ) -> None:
        self._items: deque[object] = deque()
        self._ready = threading.Condition()
        self._cancelled = threading.Event()
        self._wake: Callable[[], None] | None = None
        self._arrived: asyncio.Event | None = None
        self._done = False
        if worker is not None and produce is not None:
            worker.submit(self._run, produce)

    # Without a producer, someone else (the batch scheduler) pushes items:
    def put(self, item: T) -> None:
        self._push(item)

    def fail(self, error: BaseException) -> None:
        """End the stream with `error`, raised to the reader."""
        self._push(_Failure(error))
        self._push(_End())

    def end(self) -> None:
        self._push(_End())

    @property
    def cancelled(self) -> bool:
        """Whether the reader went away (close() was called)."""
        return self._cancelled.is_set()

    def _run(self, produce: Callable[[], Generator[T, None, None]]) -> None:
        if self._cancelled.is_set():
            self._push(_End())
            return
        items = produce()
        try:
            for item in items:
                self._push(item)
                if self._cancelled.is_set():
                    break
        except BaseException as err:  # handed to the reader, who raises it
            self._push(_Failure(err))
        finally:
            items.close()  # its own cleanup runs now, on this thread
        self._push(_End())

    def _push(self, item: object) -> None:
        with self._ready:
            self._items.append(item)
            self._ready.notify()
            wake = self._wake
        if wake is not None:
            wake()

    def _unwrap(self, item: object) -> T:
        if isinstance(item, _End):
            self._done = True
            raise StopIteration
        if isinstance(item, _Failure):
            self._done = True
            raise item.error
        return item  # type: ignore[return-value]

    def __iter__(self) -> DeltaStream[T]:
        return self

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        with self._ready:
            while not self._items:
                self._ready.wait()
            item = self._items.popleft()
        return self._unwrap(item)

    def __aiter__(self) -> DeltaStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._done:
            raise StopAsyncIteration
        if self._arrived is None:
            loop = asyncio.get_running_loop()
            arrived = self._arrived = asyncio.Event()
            with self._ready:
                self._wake = lambda: loop.call_soon_threadsafe(arrived.set)
        while True:
            with self._ready:
                if self._items:
                    item = self._items.popleft()
                    break
                self._arrived.clear()
            await self._arrived.wait()
        try:
            return self._unwrap(item)
        except StopIteration:
            raise StopAsyncIteration from None

    def stop(self) -> None:
        """Stop the producer at its next item, but still deliver what it sends at the end
        (the final Delta with finish_reason and usage): a server shutting down."""
        self._cancelled.set()

    def close(self) -> None:
        """Stop the producer at its next item (a reader that went away)."""
        self._cancelled.set()
        self._done = True

    async def aclose(self) -> None:
        self.close()

    def __enter__(self) -> DeltaStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self._cancelled.set()
