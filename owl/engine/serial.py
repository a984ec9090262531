"""One generation at a time: the scheduler of a backend that cannot batch (transformers).

Each job runs whole on the engine thread (owl/engine/worker.py), in the order submitted;
the backend yields sampled token ids and the job hands them to its sink until the sink
says stop. What only the llama.cpp backend can do — constrained output, logprobs, scoring
a prompt — is refused at submit, before anything is queued.
"""

from __future__ import annotations

import threading
from collections.abc import Generator
from concurrent.futures import Executor
from typing import Protocol

from owl.engine.backend import Occupancy, Sink
from owl.engine.sampling import SamplingParams
from owl.errors import NotSupportedYet, ServerBusy


class TokenGenerator(Protocol):
    """What the serial scheduler needs from a backend."""

    def generate(self, tokens: list[int], params: SamplingParams) -> Generator[int, None, None]:
        """Evaluate `tokens`, then yield sampled token ids until the caller stops."""
        ...


class SerialScheduler:
    """Runs `generator`'s generations one after another on `worker` (one thread).

    `name` names the model in the refusal of what it cannot do.
    """

    def __init__(self, generator: TokenGenerator, *, worker: Executor, name: str) -> None:
        self.generator = generator
        self.worker = worker
        self.name = name
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._queued = 0  # submitted, not yet ended (the running one included)
        self._running = False
        self._closed = False
        self._aborted = False

    def submit(
        self,
        prompt: list[int],
        params: SamplingParams,
        sink: Sink,
        *,
        prompt_logprobs: int | None = None,
        sample: bool = True,
        cache_prompt: bool = True,  # every prompt is evaluated whole here anyway
        group: object | None = None,  # one at a time: every group waits its turn alike
        media: object | None = None,  # never given: Model.chat_media needs Capability.SEE
    ) -> None:
        wanted = [
            feature
            for feature, asked in (
                ("constrained output (response_format, tools)", params.grammar is not None),
                ("logprobs", params.logprobs is not None or prompt_logprobs is not None),
                ("scoring without generating", not sample),
            )
            if asked
        ]
        if wanted:
            raise NotSupportedYet(
                f"{', '.join(wanted)} needs the llama.cpp backend; model '{self.name}' runs on "
                f"another one. Convert it to GGUF (`owl convert`) to use it"
            )
        with self._lock:
            if self._closed:
                raise ServerBusy("the model is being unloaded; retry in a moment")
            self._queued += 1
        self.worker.submit(self._drive, list(prompt), params, sink)

    def occupancy(self) -> Occupancy:
        with self._lock:
            running = int(self._running)
            return Occupancy(1, running, self._queued - running)

    def wait_idle(self) -> None:
        with self._idle:
            while self._queued:
                self._idle.wait()

    def abort(self) -> None:
        with self._lock:
            self._closed = True
            self._aborted = True

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def _drive(self, prompt: list[int], params: SamplingParams, sink: Sink) -> None:
        # On the worker thread only.
        with self._lock:
            self._running = True
        try:
            self._generate(prompt, params, sink)
        finally:
            with self._lock:
                self._running = False
                self._queued -= 1
                if not self._queued:
                    self._idle.notify_all()

    def _generate(self, prompt: list[int], params: SamplingParams, sink: Sink) -> None:
        if sink.cancelled or self._aborted:
            sink.end()
            return
        try:
            tokens = self.generator.generate(prompt, params)
        except BaseException as err:  # handed to the reader, who raises it
            sink.end(err)
            return
        try:
            for token in tokens:
                if self._aborted or not sink.token(token, None):
                    break
        except BaseException as err:
            sink.end(err)
            return
        finally:
            tokens.close()  # frees what the generation holds (its KV cache) at once
        sink.end()
