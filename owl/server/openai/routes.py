"""OpenAI's routes: /v1/models, /v1/chat/completions, /v1/completions, /v1/embeddings.

Translations, nothing more: a request becomes the serving core's Task (protocol.py), and
the Job's choices come back as OpenAI's response models, whole or as server-sent events.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from owl.docs.grounding import check_citations
from owl.engine import Usage
from owl.engine.adapters import adapter_of
from owl.errors import InvalidPrompt, ModelNotFound
from owl.server import serving
from owl.server.choices import Choice, total_usage
from owl.server.embedding import EmbedTask, check_count, embed
from owl.server.framing import SSE, framed
from owl.server.grounded import sources_json
from owl.server.openai.bodies import (
    AssistantMessage,
    ChatChoiceBody,
    ChatCompletion,
    ChatCompletionChunk,
    ChatLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoiceBody,
    CompletionLogprobs,
    EmbeddingBody,
    EmbeddingList,
    EmbeddingUsage,
    FunctionCallBody,
    ModelCard,
    ModelList,
    ToolCallBody,
    UsageBody,
)
from owl.server.openai.embedding_inputs import parts_to_inputs
from owl.server.openai.logprobs import chat_logprobs, completion_logprobs
from owl.server.openai.protocol import (
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
)
from owl.server.serving import Job, Reply
from owl.store import Manifest

router = APIRouter(prefix="/v1")


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def _usage(usage: Usage | None) -> UsageBody | None:
    if usage is None:
        return None
    return UsageBody(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        total_tokens=usage.total_tokens,
    )


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    store = serving.pool_of(request).store

    def cards() -> list[ModelCard]:
        return [_card(manifest, adapter_of(manifest, store=store)) for manifest in store.list()]

    return ModelList(data=await run_in_threadpool(cards)).body()


@router.get("/models/{model_id:path}")
async def get_model(model_id: str, request: Request) -> dict[str, Any]:
    try:
        manifest = await run_in_threadpool(serving.pool_of(request).manifest, model_id)
    except ModelNotFound:
        raise ModelNotFound(f"model '{model_id}' does not exist") from None
    return _card(manifest).body()


def _card(manifest: Manifest, base: str | None = None) -> ModelCard:
    created = int(manifest.pulled_at.timestamp())
    if base is None:
        return ModelCard(id=manifest.display_name, created=created)
    # A LoRA adapter: ask for it as "BASE+ADAPTER" or by itself.
    owner = f"lora adapter of {base}" if base else "lora adapter"
    return ModelCard(id=manifest.display_name, created=created, owned_by=owner, adapter_of=base)


@dataclass(frozen=True)
class _Chat:
    """A chat job's response bodies, whole or as chunks."""

    job: Job
    ident: str
    created: int

    def chunk(
        self,
        index: int,
        delta: AssistantMessage,
        *,
        finish: str | None = None,
        logprobs: ChatLogprobs | None = None,
        **usage: UsageBody | None,
    ) -> ChatCompletionChunk:
        choice = ChunkChoice(index=index, delta=delta, logprobs=logprobs, finish_reason=finish)
        return ChatCompletionChunk(
            id=self.ident,
            created=self.created,
            model=self.job.model.name,
            choices=[choice],
            **usage,
        )

    def usage_chunk(self, choices: list[Choice]) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.ident,
            created=self.created,
            model=self.job.model.name,
            choices=[],
            usage=_usage(total_usage(choices)),
        )

    def message(
        self, reply: Reply, *, streamed: bool = False
    ) -> tuple[AssistantMessage, str | None]:
        """The assistant's message and finish reason ("tool_calls" when it called one)."""
        if not reply.tool_calls:
            return AssistantMessage(role="assistant", content=reply.content), reply.finish_reason
        calls = [
            ToolCallBody(
                id=call.id,
                function=FunctionCallBody(name=call.name, arguments=json.dumps(call.arguments)),
                **({"index": i} if streamed else {}),
            )
            for i, call in enumerate(reply.tool_calls)
        ]
        message = AssistantMessage(role="assistant", content=reply.content, tool_calls=calls)
        return message, "tool_calls"


@router.post("/chat/completions")
async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
    job = await serving.submit(request, body.to_task())
    chat = _Chat(job, new_id("chatcmpl"), now())
    if body.stream and job.task.tools is None:
        return await framed(request, _chat_events(chat, body.include_usage()), SSE)
    if body.stream:
        # A tool call is known only once its JSON is complete: stream each choice whole.
        return await framed(request, _whole_chat_events(chat, body.include_usage()), SSE)
    choices = await serving.collect(request, job)
    answers = []
    for index, choice in enumerate(choices):
        message, finish = chat.message(job.reply(choice))
        logprobs = chat_logprobs(job.model, choice.logprobs) if body.logprobs else None
        answer = ChatChoiceBody(
            index=index, message=message, logprobs=logprobs, finish_reason=finish
        )
        if job.sources and message.content is not None:
            cited = check_citations(message.content, len(job.sources))
            answer.message = AssistantMessage(role="assistant", content=cited.text)
            answer.citations = cited.citations
        answers.append(answer)
    completion = ChatCompletion(
        id=chat.ident,
        created=chat.created,
        model=job.model.name,
        choices=answers,
        usage=_usage(total_usage(choices)),
    )
    if job.sources:
        completion.sources = sources_json(job.sources)
    return completion.body()


async def _chat_events(chat: _Chat, include_usage: bool) -> AsyncIterator[ChatCompletionChunk]:
    """Streamed chat choices: a role chunk each, content chunks (with their logprobs), a
    finishing chunk each, usage."""
    job = chat.job
    for index in range(len(job.streams)):
        first = chat.chunk(index, AssistantMessage(role="assistant", content=""))
        if job.sources and index == 0:
            first.sources = sources_json(job.sources)
        yield first
    choices = [Choice() for _ in job.streams]
    async with aclosing(job.deltas()) as deltas:
        async for index, delta in deltas:
            choices[index].add(delta)
            if delta.text or delta.logprobs:
                logprobs = chat_logprobs(job.model, delta.logprobs) if delta.logprobs else None
                yield chat.chunk(index, AssistantMessage(content=delta.text), logprobs=logprobs)
            if delta.finish_reason is not None:
                finish, usage = delta.finish_reason, _usage(delta.usage)
                last = chat.chunk(index, AssistantMessage(), finish=finish, usage=usage)
                if job.sources:
                    cited = check_citations(choices[index].text, len(job.sources))
                    last.choices[0].citations = cited.citations
                yield last
    if include_usage:
        yield chat.usage_chunk(choices)


async def _whole_chat_events(
    chat: _Chat, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    choices = await chat.job.choices()
    for index, choice in enumerate(choices):
        message, finish = chat.message(chat.job.reply(choice), streamed=True)
        yield chat.chunk(index, message)
        yield chat.chunk(index, AssistantMessage(), finish=finish)
    if include_usage:
        yield chat.usage_chunk(choices)


@router.post("/completions")
async def completions(body: CompletionRequest, request: Request) -> Any:
    tasks = body.to_tasks()
    if body.stream and len(tasks) > 1:
        raise InvalidPrompt("owl streams one prompt per request; send the prompts one by one")
    jobs = await _submitted(request, tasks)
    ident, created = new_id("cmpl"), now()
    name = jobs[0].model.name

    def completion(choices: list[CompletionChoiceBody], **usage: UsageBody | None) -> Completion:
        return Completion(id=ident, created=created, model=name, choices=choices, **usage)

    if body.stream:
        return await framed(request, _completion_events(jobs[0], body, completion), SSE)
    answers, every = [], []  # a prompt's n choices, then the next prompt's (as OpenAI numbers them)
    for job in jobs:
        choices = await serving.collect(request, job)
        echoed = _echoed(job) if body.echo else ""
        for choice in choices:
            answers.append(
                CompletionChoiceBody(
                    index=len(answers),
                    text=echoed + choice.text,
                    logprobs=_completion_logprobs(job, body, choice),
                    finish_reason=choice.finish_reason,
                )
            )
        every += choices
    return completion(answers, usage=_usage(total_usage(every))).body()


async def _submitted(request: Request, tasks: list[serving.Task]) -> list[Job]:
    """Every task's job started (they run side by side), or none: those started are stopped
    when a later one is refused."""
    jobs: list[Job] = []
    try:
        for task in tasks:
            jobs.append(await serving.submit(request, task))
    except BaseException:
        for job in jobs:
            for stream in job.streams:
                stream.close()
        raise
    return jobs


def _echoed(job: Job) -> str:
    """The prompt as the answer echoes it: its text, or the text of its token ids."""
    if job.task.prompt is not None:
        return job.task.prompt
    return serving.text_of(job.model, job.prompt)


def _completion_logprobs(
    job: Job, body: CompletionRequest, choice: Choice
) -> CompletionLogprobs | None:
    if body.logprobs is None:
        return None
    entries = list(choice.logprobs)
    tokens = [entry.token for entry in choice.logprobs]
    if body.echo and choice.prompt is not None:
        return completion_logprobs(
            job.model, [*choice.prompt, *entries], [*job.prompt, *tokens], generated=bool(tokens)
        )
    return completion_logprobs(job.model, entries, tokens)


async def _completion_events(
    job: Job, body: CompletionRequest, completion: Any
) -> AsyncIterator[Completion]:
    """Completion chunks per choice (echoed prompt first, logprobs per chunk), usage."""
    prompt = _echoed(job)

    def chunk(index: int, text: str, **fields: Any) -> Completion:
        return completion([CompletionChoiceBody(index=index, text=text, **fields)])

    choices = [Choice() for _ in job.streams]
    if body.echo and body.logprobs is None:
        for index in range(len(job.streams)):
            yield chunk(index, prompt)
    async with aclosing(job.deltas()) as deltas:
        async for index, delta in deltas:
            choices[index].add(delta)
            if delta.prompt is not None:
                yield chunk(
                    index,
                    prompt,
                    logprobs=completion_logprobs(
                        job.model, delta.prompt, job.prompt, generated=False
                    ),
                )
            if delta.text or delta.logprobs:
                logprobs = None
                if body.logprobs is not None:
                    tokens = [entry.token for entry in delta.logprobs]
                    logprobs = completion_logprobs(job.model, delta.logprobs, tokens)
                yield chunk(index, delta.text, logprobs=logprobs)
            if delta.finish_reason is not None:
                finish = delta.finish_reason
                final = CompletionChoiceBody(index=index, text="", finish_reason=finish)
                yield completion([final], usage=_usage(delta.usage))
    if body.include_usage():
        yield completion([], usage=_usage(total_usage(choices)))


@router.post("/embeddings")
async def openai_embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    items = [body.input] if isinstance(body.input, str) else list(body.input)
    check_count(len(items))
    if all(isinstance(item, int) for item in items):
        items = [items]  # one input as token ids
    if any(isinstance(item, BaseModel) for item in items):
        settings = request.app.state.settings
        inputs = await run_in_threadpool(parts_to_inputs, items, settings)
        task = EmbedTask(model=body.model, mixed=inputs, dimensions=body.dimensions)
    else:
        texts = items if isinstance(items[0], str) else None
        task = EmbedTask(
            model=body.model,
            texts=texts,
            tokens=None if texts else items,
            dimensions=body.dimensions,
        )
    result = (await embed(request, task)).embeddings
    return EmbeddingList(
        data=[
            EmbeddingBody(index=index, embedding=_encoded(vector, body.encoding_format))
            for index, vector in enumerate(result.vectors)
        ],
        model=body.model.strip(),
        usage=EmbeddingUsage(prompt_tokens=result.total_tokens, total_tokens=result.total_tokens),
    ).body()


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    # What the openai client asks for by default and decodes with numpy: float32 bytes,
    # little-endian, in base64.
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
