"""Embeddings: OpenAI's POST /v1/embeddings and Ollama's /api/embed and /api/embeddings.

Translations onto one engine call, owl.engine.embed.Embedder.embed. Loaded embedders live
in a small per-app cache (app.state.embedders), apart from the generation models of
owl/server/pool.py: an embedding context is its own llama.cpp context.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, FastAPI, Request
from pydantic import ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from owl.engine.embed import Embedder, Embeddings, load_embedder
from owl.errors import InvalidPrompt
from owl.server.body_checks import CheckedBody
from owl.server.ollama_schemas import EmbedRequest, parse_body
from owl.server.pool import ModelPool
from owl.store.lock import check_locked

router = APIRouter()
MAX_INPUTS = 2048  # per request, as OpenAI's own limit
CACHED_EMBEDDERS = 2


@dataclass(eq=False)
class _Entry:
    embedder: Embedder
    users: int = 0
    last_used: float = field(default_factory=time.monotonic)


class Embedders:
    """Embedders by model name and weights digest; the least recently used idle one goes
    when more than `capacity` are loaded."""

    def __init__(self, pool: ModelPool, *, capacity: int = CACHED_EMBEDDERS) -> None:
        self.pool = pool
        self.capacity = capacity
        self._entries: dict[str, _Entry] = {}
        self._loading = asyncio.Lock()

    @asynccontextmanager
    async def using(self, name: str) -> AsyncIterator[Embedder]:
        """The embedder for model `name`, loaded if needed; not unloaded while in use."""
        manifest = await run_in_threadpool(self.pool.manifest, name)
        if self.pool.lock is not None:
            check_locked(manifest, self.pool.lock)
        key = f"{manifest.display_name}@{manifest.weights.digest}"
        async with self._loading:
            entry = self._entries.get(key)
            if entry is None:
                embedder = await run_in_threadpool(
                    load_embedder,
                    manifest,
                    store=self.pool.store,
                    settings=self.pool.settings,
                    allow_unsafe=bool(
                        {manifest.name, manifest.display_name} & self.pool.allow_unsafe
                    ),
                    by="owl serve --allow-unsafe",
                )
                entry = self._entries[key] = _Entry(embedder)
            entry.users += 1
            await self._evict()
        try:
            yield entry.embedder
        finally:
            entry.users -= 1
            entry.last_used = time.monotonic()

    async def _evict(self) -> None:
        idle = sorted(
            (item for item in self._entries.items() if not item[1].users),
            key=lambda item: item[1].last_used,
        )
        while len(self._entries) > self.capacity and idle:
            key, entry = idle.pop(0)
            del self._entries[key]
            await run_in_threadpool(entry.embedder.close)

    def close(self) -> None:
        for entry in self._entries.values():
            entry.embedder.close()
        self._entries.clear()


def install(app: FastAPI) -> None:
    """Serve the embedding routes of `app`, with its own cache of embedders."""
    app.state.embedders = Embedders(app.state.pool)
    app.include_router(router)


def _embedders(request: Request) -> Embedders:
    return request.app.state.embedders


def _check_dimensions(wanted: int | None, embedder: Embedder) -> None:
    if wanted is not None and wanted != embedder.dimensions:
        raise InvalidPrompt(
            f"'{embedder.name}' makes embeddings of {embedder.dimensions} dimensions; "
            f"it cannot give {wanted}: leave 'dimensions' out"
        )


def _check_count(count: int) -> None:
    if count == 0:
        raise InvalidPrompt("'input' is empty; send a string or a list of strings")
    if count > MAX_INPUTS:
        raise InvalidPrompt(f"'input' has {count} items; send at most {MAX_INPUTS} per request")


class EmbeddingRequest(CheckedBody):
    """OpenAI's embeddings request: texts, or texts already as token ids."""

    model_config = ConfigDict(extra="ignore")  # `user` and what else clients send

    model: str = Field(min_length=1, max_length=512)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    # What the openai client asks for by default and decodes with numpy: float32 bytes,
    # little-endian, in base64.
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


@router.post("/v1/embeddings")
async def openai_embeddings(body: EmbeddingRequest, request: Request) -> dict[str, Any]:
    items = [body.input] if isinstance(body.input, str) else list(body.input)
    _check_count(len(items))
    if all(isinstance(item, int) for item in items):
        items = [items]  # one input as token ids
    async with _embedders(request).using(body.model) as embedder:
        _check_dimensions(body.dimensions, embedder)
        if isinstance(items[0], str):
            result = await run_in_threadpool(embedder.embed, items)
        else:
            result = await run_in_threadpool(embedder.embed_tokens, items)
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": _encoded(vector, body.encoding_format),
            }
            for index, vector in enumerate(result.vectors)
        ],
        "model": body.model.strip(),
        "usage": {"prompt_tokens": result.total_tokens, "total_tokens": result.total_tokens},
    }


async def _ollama_embed(
    request: Request, body: EmbedRequest, texts: list[str], *, normalize: bool
) -> tuple[Embeddings, int, int]:
    """(embeddings, load duration, total duration) in Ollama's nanoseconds."""
    started = time.monotonic_ns()
    async with _embedders(request).using(body.model) as embedder:
        loaded = time.monotonic_ns()
        _check_dimensions(body.dimensions, embedder)
        # Ollama truncates inputs longer than the context unless told not to.
        truncate = body.truncate is not False
        result = Embeddings([], [])
        if texts:
            result = await run_in_threadpool(
                lambda: embedder.embed(texts, normalize=normalize, truncate=truncate)
            )
    return result, loaded - started, time.monotonic_ns() - started


@router.post("/api/embed")
async def ollama_embed(request: Request) -> dict[str, Any]:
    body = await parse_body(request, EmbedRequest)
    if isinstance(body.input, list):
        texts = body.input
        _check_count(len(texts) or 1)  # an empty list only loads the model, as in Ollama
    else:
        texts = [body.input] if body.input else []
    result, load, total = await _ollama_embed(request, body, texts, normalize=True)
    return {
        "model": body.model.strip(),
        "embeddings": result.vectors,
        "total_duration": total,
        "load_duration": load,
        "prompt_eval_count": result.total_tokens,
    }


@router.post("/api/embeddings")
async def ollama_embeddings(request: Request) -> dict[str, Any]:
    """The older form: one `prompt`, a vector not normalized (as Ollama's)."""
    body = await parse_body(request, EmbedRequest)
    texts = [body.prompt] if body.prompt else []
    result, _, _ = await _ollama_embed(request, body, texts, normalize=False)
    return {"embedding": result.vectors[0] if result.vectors else []}
