"""Continuous batching: many generations share one model, one decode call per step.

Each step of the loop (on the engine thread) admits waiting requests into free slots,
builds one batch — one token for every generation that is decoding, then chunks of the
prompts still being read — decodes it in one call and samples a token per generation.
Requests join and leave between steps, so a short answer never waits for a long one.

A slot is a KV-cache sequence. It keeps the tokens of its last request after that request
ends (the prompt cache): a new request goes to the free slot that shares the longest
prefix with its prompt, and only the rest of its prompt is evaluated — the next turn of a
chat, or a shared system prompt, costs only its new tokens.

The library parts (KV cache, batch, samplers) are behind `Decoder`, implemented by the
llama.cpp backend; this module only schedules.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

from owl.engine.backend import Occupancy, Sink, TokenLogprob
from owl.engine.sampling import SamplingParams
from owl.errors import ContextOverflow, ServerBusy

log = logging.getLogger(__name__)

# A prompt position an image fills (the prompt of a request with images holds one per image
# token); the decoder prefills those with the request's media. In a slot's cache, the
# positions of a prefilled prefix read PREFILLED, which no prompt holds: a later request
# never reuses a cache that depends on another request's images.
MEDIA = -2
PREFILLED = -1


@dataclass
class Piece:
    """Tokens of one sequence in a batch, at positions start, start+1, …"""

    seq: int
    tokens: list[int]
    start: int
    logits: bool  # whether the last token's next-token distribution is wanted
    all_logits: bool = False  # every token's (to score a prompt)


class Decoder(Protocol):
    """What the scheduler needs from a library: a KV cache with sequences, and samplers."""

    @property
    def slots(self) -> int: ...

    @property
    def batch_size(self) -> int: ...

    def forget(self, seq: int, start: int) -> None:
        """Drop sequence `seq`'s cache from position `start` on."""
        ...

    def decode(self, pieces: list[Piece]) -> bool:
        """Evaluate the pieces in one call; False when the KV cache has no room left."""
        ...

    def sampler(self, params: SamplingParams, history: list[int]) -> Any:
        """A sampler for one generation; `history` feeds its repetition penalties."""
        ...

    def sample(self, sampler: Any, index: int) -> int:
        """Sample from the next-token distribution after the `index`-th token of the last
        decode's batch."""
        ...

    def logprob(self, index: int, token: int, top: int) -> TokenLogprob:
        """`token`'s log-probability after the `index`-th token of the last decode's batch."""
        ...

    def free_sampler(self, sampler: Any) -> None: ...

    def prefill(self, tokens: list[int], media: Any, seq: int) -> None:
        """Evaluate `tokens` (text ids, and MEDIA runs that `media`'s images fill, in
        order) into sequence `seq` from position 0, with no logits."""
        ...


@dataclass(eq=False)
class Job:
    prompt: list[int]
    params: SamplingParams
    sink: Sink
    prompt_logprobs: int | None = None  # score the prompt, with this many alternatives
    sample: bool = True  # False: only score the prompt
    cache_prompt: bool = True  # False: evaluate the whole prompt, whatever a slot holds
    group: object | None = None  # the request it belongs to (None: a group of its own)
    media: Any = None  # the images that fill the prompt's MEDIA positions (Decoder.prefill)
    pending: list[int] = field(default_factory=list)  # tokens to evaluate next
    sampler: Any = None
    slot: Slot | None = None
    scores: list[TokenLogprob | None] = field(default_factory=list)


@dataclass(eq=False)
class Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # tokens in the KV cache, from position 0
    job: Job | None = None
    last_used: int = 0


def _group_key(job: Job) -> int:
    return id(job.group) if job.group is not None else id(job)


def _scoring(job: Job) -> bool:
    """Whether `job` is reading a prompt it scores."""
    assert job.slot is not None
    return job.prompt_logprobs is not None and len(job.slot.cached) < len(job.prompt)


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class BatchingScheduler:
    """Continuous batching over `decoder`'s slots; steps run on `worker` (one thread)."""

    def __init__(self, decoder: Decoder, *, worker: Executor) -> None:
        self.decoder = decoder
        self.worker = worker
        self.slots = [Slot(seq) for seq in range(decoder.slots)]
        self._inbox: deque[Job] = deque()
        self._waiting: deque[Job] = deque()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._scheduled = False
        self._closed = False
        self._aborted = False
        self._clock = 0
        self._scored_last = False  # the last step read a scored prompt alone (_plan)
        self.reused_tokens = 0  # prompt tokens served from the cache, for tests and metrics

    # Any thread:
    def submit(
        self,
        prompt: list[int],
        params: SamplingParams,
        sink: Sink,
        *,
        prompt_logprobs: int | None = None,
        sample: bool = True,
        cache_prompt: bool = True,
        group: object | None = None,
        media: Any = None,
    ) -> None:
        """Queue a generation. A prompt with MEDIA positions comes with the `media` that
        fill them; its prefix up to the last image is prefilled when it gets a slot.
        Jobs of one `group` (the choices of one request) share the slots fairly with the
        others: a free slot goes to the waiting job whose group holds the fewest slots, the
        oldest first among equals — so a request for n=8 choices cannot take every slot
        from requests that arrived after it."""
        job = Job(
            list(prompt),
            params,
            sink,
            prompt_logprobs=prompt_logprobs,
            sample=sample,
            cache_prompt=cache_prompt,
            group=group,
            media=media,
        )
        with self._lock:
            if self._closed:
                raise ServerBusy("the model is being unloaded; retry in a moment")
            self._inbox.append(job)
            self._kick()

    def occupancy(self) -> Occupancy:
        with self._lock:
            running = sum(1 for slot in self.slots if slot.job is not None)
            return Occupancy(len(self.slots), running, len(self._waiting) + len(self._inbox))

    @property
    def busy(self) -> int:
        """Generations running or waiting."""
        return self.occupancy().busy

    def wait_idle(self) -> None:
        with self._idle:
            while self._scheduled:
                self._idle.wait()

    def close(self) -> None:
        with self._lock:
            self._closed = True

    def abort(self) -> None:
        """Refuse new work and end every generation at the next step, running or waiting
        (each still gets its final Delta): an unload that must not wait for them."""
        with self._lock:
            self._closed = True
            self._aborted = True
            self._kick()

    def _kick(self) -> None:
        # Under self._lock. One step at a time in the worker's queue: steps of several
        # models take turns on the one engine thread.
        if not self._scheduled:
            self._scheduled = True
            self.worker.submit(self._run_step)

    # The worker thread:
    def _run_step(self) -> None:
        try:
            self._step()
        except BaseException as err:  # a library failure ends every generation, not the loop
            log.exception("batch step failed")
            for slot in self.slots:
                if slot.job is not None:
                    self._finish(slot.job, err)
                slot.cached = []
                try:
                    self.decoder.forget(slot.seq, 0)
                except Exception:
                    log.exception("could not clear the KV cache")
        with self._lock:
            self._waiting.extend(self._inbox)
            self._inbox.clear()
            self._scheduled = False
            if self._waiting or any(slot.job is not None for slot in self.slots):
                self._kick()
            else:
                self._idle.notify_all()

    def _step(self) -> None:
        with self._lock:
            self._waiting.extend(self._inbox)
            self._inbox.clear()
        for job in [job for job in self._waiting if job.sink.cancelled or self._aborted]:
            self._waiting.remove(job)
            job.sink.end()
        for slot in self.slots:
            if slot.job is not None and (slot.job.sink.cancelled or self._aborted):
                self._finish(slot.job)
        while self._waiting and any(slot.job is None for slot in self.slots):
            job = self._fairest_waiting()
            self._waiting.remove(job)
            self._admit(job)
        pieces, jobs = self._plan()
        if not pieces:
            return
        if not self.decoder.decode(pieces):
            self._make_room(jobs)
            return
        index = 0
        for piece, job in zip(pieces, jobs, strict=True):
            slot = job.slot
            assert slot is not None
            if piece.all_logits:
                self._score(job, piece, index)
            slot.cached += piece.tokens
            del job.pending[: len(piece.tokens)]
            index += len(piece.tokens)
            if not piece.logits:
                continue
            if job.prompt_logprobs is not None and len(slot.cached) == len(job.prompt):
                job.sink.prompt_logprobs(job.scores)
            if not job.sample:
                self._finish(job)
                continue
            last = index - 1
            token = self.decoder.sample(job.sampler, last)
            logprob = None
            if job.params.logprobs is not None:
                logprob = self.decoder.logprob(last, token, job.params.logprobs)
            if job.sink.token(token, logprob):
                job.pending = [token]
            else:
                self._finish(job)

    def _fairest_waiting(self) -> Job:
        """The waiting job whose group holds the fewest slots; the oldest among equals."""
        held: dict[int, int] = {}
        for slot in self.slots:
            if slot.job is not None:
                key = _group_key(slot.job)
                held[key] = held.get(key, 0) + 1
        return min(self._waiting, key=lambda job: held.get(_group_key(job), 0))

    def _score(self, job: Job, piece: Piece, index: int) -> None:
        """Each prompt token's log-probability given the tokens before it."""
        assert job.prompt_logprobs is not None
        if piece.start == 0:
            job.scores.append(None)
        for offset in range(len(piece.tokens)):
            position = piece.start + offset + 1
            if position < len(job.prompt):
                job.scores.append(
                    self.decoder.logprob(index + offset, job.prompt[position], job.prompt_logprobs)
                )

    def _admit(self, job: Job) -> None:
        free = [slot for slot in self.slots if slot.job is None]
        slot = max(free, key=lambda s: (common_prefix(s.cached, job.prompt), -s.last_used))
        reused = common_prefix(slot.cached, job.prompt)
        # The last prompt token is always evaluated again: its logits give the first token.
        # A prompt to score is evaluated whole: every token's logits are needed. Reusing a
        # prefix evaluates the rest in a smaller batch, which moves logits slightly (about
        # 1e-2 in a logprob, measured): `cache_prompt=False` trades speed for answers that
        # never depend on what a slot held before.
        whole = job.prompt_logprobs is not None or not job.cache_prompt or job.media is not None
        reused = 0 if whole else min(reused, len(job.prompt) - 1)
        self.decoder.forget(slot.seq, reused)
        slot.cached = slot.cached[:reused]
        self.reused_tokens += reused
        job.pending = job.prompt[reused:]
        if job.media is not None and not self._prefilled(job, slot):
            return
        try:
            job.sampler = self.decoder.sampler(job.params, job.prompt) if job.sample else None
        except Exception as err:  # e.g. a grammar llama.cpp refuses: this job's failure only
            job.sink.end(err)
            return
        job.slot = slot
        slot.job = job
        self._clock += 1
        slot.last_used = self._clock

    def _prefilled(self, job: Job, slot: Slot) -> bool:
        """Prefill `job`'s prompt up to its last image into `slot`: the images are encoded
        here, on the engine thread, while the other slots wait one step; the text after the
        last image is read like any prompt's. False (the job ended) when that fails."""
        last = max(i for i, token in enumerate(job.prompt) if token == MEDIA)
        self.decoder.forget(slot.seq, 0)
        slot.cached = []
        try:
            self.decoder.prefill(job.prompt[: last + 1], job.media, slot.seq)
        except Exception as err:  # this request's images, not the others' generations
            self.decoder.forget(slot.seq, 0)
            job.sink.end(err)
            return False
        slot.cached = [PREFILLED] * (last + 1)
        job.pending = job.prompt[last + 1 :]
        return True

    def _plan(self) -> tuple[list[Piece], list[Job]]:
        """One decoding token per generation first, then prompt chunks while room is left.

        A prompt being scored is read alone instead, a whole batch at a time from position
        0: llama.cpp's numbers depend on what shares a micro-batch and where a chunk starts,
        and read so they are the Scorer's (owl/engine/llama/scorer.py), whatever else runs
        in whichever slot. Such steps take turns with the others, so generations still
        advance while long prompts are scored.
        """
        budget = self.decoder.batch_size
        pieces: list[Piece] = []
        jobs: list[Job] = []
        active = [slot.job for slot in self.slots if slot.job is not None]
        decoding = [job for job in active if len(job.pending) == 1 and job.slot.cached]
        reading = sorted(
            (job for job in active if job not in decoding), key=lambda job: job.slot.last_used
        )
        scoring = [job for job in reading + decoding if _scoring(job)]  # the oldest first
        others = [job for job in decoding + reading if job not in scoring]
        alone = bool(scoring) and not (self._scored_last and others)
        self._scored_last = alone
        for job in scoring[:1] if alone else others:
            if budget <= 0:
                break
            take = job.pending[:budget]
            budget -= len(take)
            done = len(take) == len(job.pending)
            pieces.append(
                Piece(job.slot.seq, take, len(job.slot.cached), logits=done, all_logits=alone)
            )
            jobs.append(job)
        return pieces, jobs

    def _make_room(self, jobs: list[Job]) -> None:
        """The KV cache is full: drop the caches of idle slots, else end the newest job."""
        idle = [slot for slot in self.slots if slot.job is None and slot.cached]
        if idle:
            for slot in idle:
                self.decoder.forget(slot.seq, 0)
                slot.cached = []
            return
        newest = max(jobs, key=lambda job: job.slot.last_used)
        self._finish(
            newest,
            ContextOverflow(
                "the server's context is full with the other requests running; retry later, "
                "or serve with a larger --ctx or fewer --parallel slots"
            ),
        )

    def _finish(self, job: Job, error: BaseException | None = None) -> None:
        slot = job.slot
        if slot is not None:
            slot.job = None
            job.slot = None
        if job.sampler is not None:
            self.decoder.free_sampler(job.sampler)
            job.sampler = None
        job.sink.end(error)
