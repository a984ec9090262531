"""The one serving core: a generation as every API asks for it, prepared once.

Each API (owl/server/openai/, ollama/, anthropic/) translates its request into a Task and
the Job's results back into its own JSON; nothing here knows an API's field names. A job
is prepared by one function, prepare(): the output grammar (tools or a JSON format) is built,
the conversation rendered through the model's chat template (or raw text tokenized), and
the generations started under the server's limits (owl/server/generations.py).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from owl.docs.types import Hit
from owl.engine import Delta, Model, SamplingParams, tool_calls
from owl.engine.grammar import json_grammar
from owl.engine.tool_calls import ToolCall, Tools
from owl.errors import InvalidPrompt
from owl.server.choices import Choice, merged
from owl.server.disconnect import unless_disconnected
from owl.server.generations import WatchedStream, start_generations
from owl.server.grounded import grounded
from owl.server.image_inputs import all_pixels
from owl.server.pool import ModelPool

MAX_STOP = 16  # stop sequences a request may give, in every API


@dataclass(frozen=True)
class JsonOutput:
    """Output constrained to JSON: one that follows `schema`, or any JSON (None)."""

    schema: dict[str, Any] | None = None


@dataclass(frozen=True, kw_only=True)
class Task:
    """One generation task: a conversation (`messages`) or raw text (`prompt`), and how
    to generate from it. Sampling values left None take the model's defaults."""

    model: str
    messages: list[dict[str, Any]] | None = None  # chat-template input, one dict a message
    prompt: str | None = None  # already formatted text, tokenized as it is
    tokens: tuple[int, ...] | None = None  # or the prompt as token ids, evaluated as they are
    tools: Tools | None = None  # the functions it may call (before `output`)
    output: JsonOutput | None = None
    sampling: Mapping[str, Any] = field(default_factory=dict)  # SamplingParams fields
    max_tokens: int | None = None
    n: int = 1  # choices, generated side by side in one batch
    logprobs: int | None = None  # alternatives per generated token; None: no logprobs
    prompt_logprobs: int | None = None  # score the prompt too, with that many alternatives
    sample: bool = True  # False: only score the prompt
    cache_prompt: bool = True  # False: never reuse a slot's cached prefix
    images: tuple[str, ...] = ()  # one per IMAGE_MARKER in `messages`, in order (image_inputs)
    keep_alive: float | None = None  # seconds the model stays loaded after; None: default
    documents: tuple[str, ...] = ()  # collections to answer from (owl/server/grounded.py)
    documents_k: int = 5  # chunks retrieved for the answer


@dataclass(frozen=True)
class Reply:
    """A choice as an assistant's message: words, or the tools it called."""

    content: str | None
    tool_calls: tuple[ToolCall, ...]
    finish_reason: str | None


@dataclass(kw_only=True, eq=False)
class Job:
    """A task's running generations, and when its stages happened (monotonic ns)."""

    task: Task
    model: Model
    prompt: list[int]  # the prompt's tokens
    streams: list[WatchedStream]
    started_ns: int
    loaded_ns: int
    first_ns: int | None = None  # the first delta of any choice
    sources: tuple[Hit, ...] = ()  # the document chunks the answer was given, numbered from 1

    async def deltas(self) -> AsyncIterator[tuple[int, Delta]]:
        """Every choice's deltas as they come, with the choice's index. Closing this
        stops the generations."""
        async with aclosing(merged(self.streams)) as deltas:
            async for index, delta in deltas:
                if self.first_ns is None:
                    self.first_ns = time.monotonic_ns()
                yield index, delta

    async def choices(self) -> list[Choice]:
        """Every choice, whole."""
        choices = [Choice() for _ in self.streams]
        async with aclosing(self.deltas()) as deltas:
            async for index, delta in deltas:
                choices[index].add(delta)
        return choices

    def reply(self, choice: Choice) -> Reply:
        """`choice` as a message: with tools offered, the call it made is read back."""
        if self.task.tools is None:
            return Reply(choice.text, (), choice.finish_reason)
        content, calls = tool_calls.parse(choice.text)
        return Reply(content, calls, choice.finish_reason)


def pool_of(request: Request) -> ModelPool:
    return request.app.state.pool


async def load(request: Request, name: str, *, keep_alive: float | None = None) -> Model:
    """The model `name`, loaded if needed and held until the request ends."""
    return await pool_of(request).get(name, keep_alive=keep_alive)


async def submit(request: Request, task: Task) -> Job:
    """Load the task's model, then prepare its job."""
    started = time.monotonic_ns()
    sources: tuple[Hit, ...] = ()
    if task.documents:  # retrieval first: its embedder and the chat model share the pool
        task, sources = await grounded(request, task)
    model = await load(request, task.model, keep_alive=task.keep_alive)
    job = await prepare(request, task, model, started_ns=started)
    job.sources = sources
    return job


async def prepare(request: Request, task: Task, model: Model, *, started_ns: int) -> Job:
    """The job of `task` on the loaded `model`, its generations started: all of its
    choices, or none (429). `started_ns`: when the request began (Ollama's durations)."""
    loaded = time.monotonic_ns()
    # Off the event loop: a schema's grammar takes a while to build (bounded: grammar.py).
    grammar = await run_in_threadpool(_grammar, task)
    params = model.sampling(
        grammar=grammar, logprobs=task.logprobs, max_tokens=task.max_tokens, **task.sampling
    )
    prompt, options = await prompt_of(request, task, model)
    streams = start_generations(
        request,
        model,
        prompt,
        [_seeded(params, index) for index in range(task.n)],
        prompt_logprobs=task.prompt_logprobs,
        sample=task.sample,
        cache_prompt=task.cache_prompt,
        **options,
    )
    return Job(
        task=task,
        model=model,
        prompt=prompt,
        streams=streams,
        started_ns=started_ns,
        loaded_ns=loaded,
    )


async def prompt_of(request: Request, task: Task, model: Model) -> tuple[list[int], dict[str, Any]]:
    """The prompt `task` evaluates on `model`: its tokens (the conversation through the chat
    template, tools described, images as their media's runs), and what generate takes with
    them (an image's `media`)."""
    options: dict[str, Any] = {}
    if task.messages is not None:
        messages = task.messages
        if task.tools is not None:
            messages = tool_calls.with_tools(messages, task.tools)
        if task.images:
            model.require_sight()  # before any image is decoded
            settings = request.app.state.settings
            pixels = await run_in_threadpool(all_pixels, task.images, settings)
            prompt, options["media"] = await run_in_threadpool(model.chat_media, messages, pixels)
        else:
            prompt = await run_in_threadpool(model.chat_tokens, messages)
    elif task.tokens is not None:
        prompt = checked_tokens(model, task.tokens)
    else:
        prompt = await run_in_threadpool(model.text_tokens, task.prompt or "")
    return prompt, options


async def count_prompt(request: Request, task: Task) -> int:
    """How many tokens `task`'s prompt is, exactly as its job would evaluate it; nothing is
    generated (Anthropic's count_tokens)."""
    model = await load(request, task.model, keep_alive=task.keep_alive)
    prompt, _ = await prompt_of(request, task, model)
    return len(prompt)


async def collect(request: Request, job: Job) -> list[Choice]:
    """Every choice of `job`, whole; stopped if the client goes away first (ClientGone)."""
    return await unless_disconnected(request, job.choices())


def checked_tokens(model: Model, tokens: Sequence[int]) -> list[int]:
    """`tokens` if every one is a token of `model`, else InvalidPrompt (a 400)."""
    size = model.backend.vocab_size
    for index, token in enumerate(tokens):
        if not 0 <= token < size:
            raise InvalidPrompt(
                f"token {index} is {token}, not a token of '{model.name}' "
                f"(its ids run from 0 to {size - 1})"
            )
    return list(tokens)


def text_of(model: Model, tokens: Sequence[int]) -> str:
    """The text of `tokens`; a control token, which has no bytes of its own, as its text
    (as a prompt writes it)."""
    backend = model.backend
    pieces = [backend.token_bytes(token) or backend.token_text(token).encode() for token in tokens]
    return b"".join(pieces).decode("utf-8", "replace")


def _grammar(task: Task) -> str | None:
    if task.tools is not None:
        return tool_calls.grammar(task.tools)
    if task.output is not None:
        schema = task.output.schema
        return json_grammar() if schema is None else json_grammar(schema)
    return None


def _seeded(params: SamplingParams, index: int) -> SamplingParams:
    # n choices from one seed must differ yet be reproducible: choice i samples with seed+i.
    if params.seed is None or index == 0:
        return params
    return params.model_copy(update={"seed": (params.seed + index) % (2**32 - 1)})
