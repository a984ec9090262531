"""POST /v1/rerank (also /rerank and /v1/reranking, as llama-server answers them): documents
ordered by relevance to a query, in the shape Cohere, Jina, llama-server and vLLM share.

    {"model": "smollm2", "query": "…", "documents": ["…" | {"text": "…"}], "top_n": 3,
     "return_documents": true}
    → {"id", "model", "results": [{"index", "relevance_score", "document": {"text"}}],
       "usage": {"total_tokens"}}

The model is a chat model from the pool, ranking by query likelihood (owl/docs/rerank.py).
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from owl.docs.rerank import MAX_DOCUMENTS, query_likelihoods
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


@router.post("/v1/rerank")
@router.post("/rerank", include_in_schema=False)
@router.post("/v1/reranking", include_in_schema=False)
async def rerank(body: RerankRequest, request: Request) -> dict[str, Any]:
    pool: ModelPool = request.app.state.pool
    model = await pool.get(body.model)
    texts = body.texts()
    scores = await run_in_threadpool(query_likelihoods, model, body.query, texts)
    order = sorted(range(len(texts)), key=lambda i: scores[i], reverse=True)[: body.top_n]
    results = []
    for index in order:
        result: dict[str, Any] = {"index": index, "relevance_score": scores[index]}
        if body.return_documents:
            result["document"] = {"text": texts[index]}
        results.append(result)
    tokens = sum(len(model.backend.tokenize(t, add_bos=False, special=False)) for t in texts)
    return {
        "id": f"rerank-{uuid.uuid4().hex}",
        "model": model.name,
        "results": results,
        "usage": {"total_tokens": tokens},
    }
