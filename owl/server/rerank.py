"""POST /v1/rerank (also /rerank and /v1/reranking, as llama-server answers them): documents
ordered by relevance to a query, in the shape Cohere, Jina, llama-server and vLLM share.

    {"model": "smollm2", "query": "…", "documents": ["…" | {"text": "…"}], "top_n": 3,
     "return_documents": true}
    → {"id", "model", "results": [{"index", "relevance_score", "document": {"text"}}],
       "usage": {"total_tokens"}}

The model is a cross-encoder when the stored model is one (its capabilities say rerank:
owl/engine/transformers/cross_encoder.py), else a chat model from the pool, ranking by query
likelihood (owl/docs/rerank.py). `usage.total_tokens` counts the documents' own tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from owl.docs.rerank import Rerank, query_likelihoods
from owl.engine import Capability, capabilities_of
from owl.engine.ranking import MAX_DOCUMENTS
from owl.server.pool import ModelPool

router = APIRouter()


class TextDocument(BaseModel):
    model_config = ConfigDict(extra="ignore")
    text: str = Field(max_length=100_000)


class RerankRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=512)
    query: str = Field(min_length=1, max_length=10_000)
    documents: list[str | TextDocument] = Field(min_length=1, max_length=MAX_DOCUMENTS)
    top_n: int | None = Field(default=None, ge=1)
    return_documents: bool = False

    def texts(self) -> list[str]:
        return [doc if isinstance(doc, str) else doc.text for doc in self.documents]


@dataclass(frozen=True)
class Ranker:
    """A model from the pool that ranks: its name, its scores and its tokenizer."""

    name: str
    rerank: Rerank
    tokenize: Callable[[str], list[int]]


async def ranker(request: Request, name: str) -> Ranker:
    """The stored model `name` as a ranker: a cross-encoder (RERANK) with its own scores, a
    chat model by query likelihood. Both are held from the pool for this request."""
    pool: ModelPool = request.app.state.pool
    manifest = await run_in_threadpool(pool.manifest, name)
    stored = await run_in_threadpool(capabilities_of, manifest, store=pool.store)
    if Capability.RERANK in stored:  # a cross-encoder
        reranker = await pool.reranker(name)
        return Ranker(reranker.name, reranker.rerank, reranker.tokenize)
    model = await pool.get(name)
    plain = partial(model.backend.tokenize, add_bos=False, special=False)
    return Ranker(model.name, partial(query_likelihoods, model), plain)


@router.post("/v1/rerank")
@router.post("/rerank", include_in_schema=False)
@router.post("/v1/reranking", include_in_schema=False)
async def rerank(body: RerankRequest, request: Request) -> dict[str, Any]:
    texts = body.texts()
    chosen = await ranker(request, body.model)
    scores = await run_in_threadpool(chosen.rerank, body.query, texts)
    tokens = await run_in_threadpool(_count, chosen.tokenize, texts)
    order = sorted(range(len(texts)), key=lambda i: scores[i], reverse=True)[: body.top_n]
    results = []
    for index in order:
        result: dict[str, Any] = {"index": index, "relevance_score": scores[index]}
        if body.return_documents:
            result["document"] = {"text": texts[index]}
        results.append(result)
    return {
        "id": f"rerank-{uuid.uuid4().hex}",
        "model": chosen.name,
        "results": results,
        "usage": {"total_tokens": tokens},
    }


def _count(tokenize: Callable[[str], list[int]], texts: list[str]) -> int:
    return sum(len(tokenize(text)) for text in texts)
