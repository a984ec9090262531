"""DeltaStream: a producer on one worker thread, read with `for` or `async for`."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from owl.engine.stream import DeltaStream


@pytest.fixture
def worker() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=True)


def _counting(limit: int, produced: list[int], closed: threading.Event, pause: float = 0.0):
    def produce() -> Iterator[int]:
        try:
            for number in range(limit):
                produced.append(number)
                yield number
                time.sleep(pause)
        finally:
            closed.set()

    return produce


def test_sync_and_async_readers_get_every_item(worker: ThreadPoolExecutor) -> None:
    closed = threading.Event()
    assert list(DeltaStream(worker, _counting(5, [], closed))) == [0, 1, 2, 3, 4]
    assert closed.is_set()

    async def read() -> list[int]:
        return [item async for item in DeltaStream(worker, _counting(5, [], threading.Event()))]

    assert asyncio.run(read()) == [0, 1, 2, 3, 4]


def test_all_items_are_produced_on_the_worker_thread(worker: ThreadPoolExecutor) -> None:
    names: set[str] = set()

    def produce() -> Iterator[str]:
        for _ in range(3):
            names.add(threading.current_thread().name)
            yield "x"

    list(DeltaStream(worker, produce))
    list(DeltaStream(worker, produce))
    assert len(names) == 1 and threading.current_thread().name not in names


def test_closing_stops_the_producer_and_closes_its_generator(worker: ThreadPoolExecutor) -> None:
    produced: list[int] = []
    closed = threading.Event()
    stream = DeltaStream(worker, _counting(10_000, produced, closed, pause=0.001))
    assert next(stream) == 0
    stream.close()
    assert closed.wait(5)
    assert len(produced) < 10_000
    with pytest.raises(StopIteration):
        next(stream)
    # The worker is free for the next stream.
    assert list(DeltaStream(worker, _counting(2, [], threading.Event()))) == [0, 1]


def test_producer_errors_reach_the_reader(worker: ThreadPoolExecutor) -> None:
    def produce() -> Iterator[int]:
        yield 1
        raise ValueError("boom")

    stream = DeltaStream(worker, produce)
    assert next(stream) == 1
    with pytest.raises(ValueError, match="boom"):
        next(stream)

    async def read() -> None:
        async for _ in DeltaStream(worker, produce):
            pass

    with pytest.raises(ValueError, match="boom"):
        asyncio.run(read())


def test_streams_run_one_at_a_time_in_order(worker: ThreadPoolExecutor) -> None:
    events: list[str] = []

    def tagged(tag: str):
        def produce() -> Iterator[str]:
            for index in range(3):
                events.append(f"{tag}{index}")
                time.sleep(0.002)
                yield tag

        return produce

    first, second = DeltaStream(worker, tagged("a")), DeltaStream(worker, tagged("b"))
    assert list(second) == ["b"] * 3 and list(first) == ["a"] * 3
    assert events == ["a0", "a1", "a2", "b0", "b1", "b2"]
