"""Embeddings, as every API asks for them: one task, one function (embed()).

OpenAI's /v1/embeddings and Ollama's /api/embed and /api/embeddings translate onto it
(owl/server/openai/routes.py, owl/server/ollama/routes.py). The embedder comes from the
server's one pool (owl/server/pool.py), under the same memory budget and keep_alive as
every other loaded model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from owl.engine import Capability, Embedder, Embeddings
from owl.engine.images import Pixels
from owl.errors import InvalidPrompt, WrongModelKind
from owl.server.pool import ModelPool

MAX_INPUTS = 2048  # per request, as OpenAI's own limit


@dataclass(frozen=True, kw_only=True)
class EmbedTask:
    """Texts (or texts already as token ids) to embed with `model`."""

    model: str
    texts: list[str] | None = None
    tokens: list[list[int]] | None = None
    mixed: list[str | Pixels] | None = None  # texts and images, for image embedding models
    normalize: bool = True  # L2-normalized vectors
    truncate: bool = False  # keep an overlong input's first tokens instead of refusing it
    dimensions: int | None = None  # what the client expects; the model's own or a 400
    keep_alive: float | None = None


@dataclass(frozen=True)
class Embedded:
    """The vectors in input order, the tokens counted, and Ollama's durations (ns)."""

    embeddings: Embeddings
    load_ns: int
    total_ns: int


def check_count(count: int) -> None:
    """A request's number of inputs: at least one, at most MAX_INPUTS."""
    if count == 0:
        raise InvalidPrompt("'input' is empty; send a string or a list of strings")
    if count > MAX_INPUTS:
        raise InvalidPrompt(f"'input' has {count} items; send at most {MAX_INPUTS} per request")


def _check_dimensions(wanted: int | None, embedder: Embedder) -> None:
    if wanted is not None and wanted != embedder.dimensions:
        raise InvalidPrompt(
            f"'{embedder.name}' makes embeddings of {embedder.dimensions} dimensions; "
            f"it cannot give {wanted}: leave 'dimensions' out"
        )


def _embed_mixed(
    embedder: Embedder, inputs: list[str | Pixels], *, normalize: bool, truncate: bool
) -> Embeddings:
    """Texts and images in input order, each kind embedded in one call."""
    if Capability.SEE not in embedder.capabilities:
        raise WrongModelKind(
            f"'{embedder.name}' embeds text only; embed images with a CLIP, SigLIP or "
            "DINOv2 model (owl pull ./folder of one)"
        )
    texts = [item for item in inputs if isinstance(item, str)]
    images = [item for item in inputs if not isinstance(item, str)]
    empty = Embeddings([], [])
    by_text = embedder.embed(texts, normalize=normalize, truncate=truncate) if texts else empty
    by_image = embedder.embed_images(images, normalize=normalize)
    text_rows = zip(by_text.vectors, by_text.token_counts, strict=True)
    image_rows = zip(by_image.vectors, by_image.token_counts, strict=True)
    rows = [next(text_rows if isinstance(item, str) else image_rows) for item in inputs]
    return Embeddings([vector for vector, _ in rows], [count for _, count in rows])


async def embed(request: Request, task: EmbedTask) -> Embedded:
    """Embed `task`'s inputs; with none, only load the model (as Ollama does)."""
    started = time.monotonic_ns()
    pool: ModelPool = request.app.state.pool
    embedder = await pool.embedder(task.model, keep_alive=task.keep_alive)
    loaded = time.monotonic_ns()
    _check_dimensions(task.dimensions, embedder)
    options = {"normalize": task.normalize, "truncate": task.truncate}
    if task.mixed:
        work = partial(_embed_mixed, embedder, task.mixed, **options)
    elif task.tokens:
        work = partial(embedder.embed_tokens, task.tokens, **options)
    elif task.texts:
        work = partial(embedder.embed, task.texts, **options)
    else:
        return Embedded(Embeddings([], []), loaded - started, time.monotonic_ns() - started)
    result = await run_in_threadpool(work)
    return Embedded(result, loaded - started, time.monotonic_ns() - started)
