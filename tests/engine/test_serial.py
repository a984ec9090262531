"""owl/engine/serial.py: one generation at a time, refusals at submit, abort and idle."""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from owl.engine.backend import Occupancy, TokenLogprob
from owl.engine.sampling import SamplingParams
from owl.engine.serial import SerialScheduler
from owl.errors import NotSupportedYet, ServerBusy


class Counter:
    """A generator backend: yields 0, 1, 2, … and notes when each generation was closed.

    `gate`: the first generation waits on it before its first token."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.closed = 0
        self.active = 0
        self.most_active = 0
        self.started = threading.Event()

    def generate(self, tokens: list[int], params: SamplingParams) -> Generator[int, None, None]:
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        try:
            self.started.set()
            if self.gate is not None:
                self.gate.wait(timeout=30)
            yield from range(1000)
        finally:
            self.active -= 1
            self.closed += 1


class Sink:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.tokens: list[int] = []
        self.ended = threading.Event()
        self.error: BaseException | None = None

    @property
    def cancelled(self) -> bool:
        return False

    def token(self, token: int, logprob: TokenLogprob | None) -> bool:
        self.tokens.append(token)
        return len(self.tokens) < self.limit

    def prompt_logprobs(self, logprobs: list[TokenLogprob | None]) -> None:
        raise AssertionError("never asked for")

    def end(self, error: BaseException | None = None) -> None:
        self.error = error
        self.ended.set()


@pytest.fixture
def worker() -> Iterator[ThreadPoolExecutor]:
    executor = ThreadPoolExecutor(max_workers=1)
    yield executor
    executor.shutdown(wait=True)


PLAIN = SamplingParams(temperature=0)


@pytest.mark.parametrize(
    ("params", "options", "feature"),
    [
        (SamplingParams(grammar='root ::= "a"'), {}, "constrained output"),
        (SamplingParams(logprobs=2), {}, "logprobs"),
        (PLAIN, {"prompt_logprobs": 1}, "logprobs"),
        (PLAIN, {"sample": False}, "scoring without generating"),
    ],
)
def test_what_needs_llama_cpp_is_refused_at_submit(
    worker: ThreadPoolExecutor, params: SamplingParams, options: dict, feature: str
) -> None:
    scheduler = SerialScheduler(Counter(), worker=worker, name="tiny")
    with pytest.raises(NotSupportedYet, match=f"{feature}.*needs the llama.cpp backend.*'tiny'"):
        scheduler.submit([1], params, Sink(3), **options)
    assert scheduler.occupancy() == Occupancy(1, 0, 0)


def test_generations_run_one_at_a_time_and_are_closed(worker: ThreadPoolExecutor) -> None:
    gate = threading.Event()
    backend = Counter(gate)
    scheduler = SerialScheduler(backend, worker=worker, name="tiny")
    sinks = [Sink(3), Sink(5)]
    for sink in sinks:
        scheduler.submit([1, 2], PLAIN, sink)
    assert backend.started.wait(timeout=30)
    assert scheduler.occupancy() == Occupancy(slots=1, running=1, waiting=1)
    gate.set()
    scheduler.wait_idle()
    assert [sink.tokens for sink in sinks] == [[0, 1, 2], [0, 1, 2, 3, 4]]
    assert all(sink.ended.is_set() and sink.error is None for sink in sinks)
    assert backend.most_active == 1 and backend.closed == 2
    assert scheduler.occupancy().busy == 0


def test_abort_ends_running_and_waiting_work_and_refuses_more(
    worker: ThreadPoolExecutor,
) -> None:
    gate = threading.Event()
    backend = Counter(gate)
    scheduler = SerialScheduler(backend, worker=worker, name="tiny")
    running, waiting = Sink(10_000), Sink(10_000)
    scheduler.submit([1], PLAIN, running)
    scheduler.submit([1], PLAIN, waiting)
    assert backend.started.wait(timeout=30)
    scheduler.abort()
    gate.set()
    scheduler.wait_idle()
    assert running.ended.is_set() and len(running.tokens) <= 1
    assert waiting.ended.is_set() and waiting.tokens == []
    with pytest.raises(ServerBusy):
        scheduler.submit([1], PLAIN, Sink(1))


def test_a_failing_backend_fails_the_reader_not_the_thread(worker: ThreadPoolExecutor) -> None:
    class Broken:
        def generate(self, tokens: list[int], params: SamplingParams) -> Generator[int, None, None]:
            raise RuntimeError("the model was closed")

    scheduler = SerialScheduler(Broken(), worker=worker, name="tiny")
    sink = Sink(3)
    scheduler.submit([1], PLAIN, sink)
    scheduler.wait_idle()
    assert isinstance(sink.error, RuntimeError)
    after = Sink(2)
    SerialScheduler(Counter(), worker=worker, name="tiny").submit([1], PLAIN, after)
    assert after.ended.wait(timeout=30) and after.tokens == [0, 1]
