"""Reranking by a chat model's log-likelihood: how likely the model finds the query as a
question that each passage answers (query likelihood, as in Sachan et al. 2022, "Improving
Passages Retrieval with Zero-Shot Question Generation"), needing no reranking model.

The score of a passage is the geometric mean of the query tokens' probabilities given the
passage, in (0, 1]; all passages are submitted at once, so the engine batches them over its
slots. Passage and query text are tokenized as plain text: nothing in them becomes a control
token.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

from owl.config import Settings
from owl.engine import Capability, Loaded, Model, load
from owl.engine.ranking import check_rerank
from owl.errors import InvalidPrompt
from owl.store import Store

Rerank = Callable[[str, Sequence[str]], list[float]]  # (query, texts) -> one score a text

_INSTRUCTION = "\nPlease write a question based on this passage.\nQuestion:"


def query_likelihoods(model: Model, query: str, documents: Sequence[str]) -> list[float]:
    """One relevance score per document, in input order: the per-token geometric-mean
    probability of `query` following the document under `model`."""
    check_rerank(query, documents)
    backend = model.backend
    plain = lambda text: backend.tokenize(text, add_bos=False, special=False)  # noqa: E731
    start = [backend.bos_token] if backend.adds_bos and backend.bos_token is not None else []
    head, tail, asked = plain("Passage:"), plain(_INSTRUCTION), plain(" " + query.strip())
    room = model.n_ctx - len(start) - len(head) - len(tail) - len(asked) - 1
    if room < 16:
        raise InvalidPrompt(
            f"the query is {len(asked)} tokens, too long to rank passages with '{model.name}' "
            f"(context {model.n_ctx}); shorten it"
        )
    params = model.sampling(temperature=0.0, max_tokens=1)
    streams = []
    for document in documents:
        passage = plain(" " + document.strip())[:room]  # a long passage is judged by its start
        tokens = start + head + passage + tail + asked
        streams.append(model.generate(tokens, params, prompt_logprobs=0, sample=False))
    return [_query_score(stream, len(asked)) for stream in streams]


def _query_score(stream, count: int) -> float:
    logprobs = None
    with stream:
        for delta in stream:
            if delta.prompt is not None:
                logprobs = delta.prompt
    if logprobs is None:
        raise InvalidPrompt("the model gave no log-probabilities for the passage")
    tail = [entry.logprob for entry in logprobs[-count:] if entry is not None]
    return math.exp(sum(tail) / len(tail)) if tail else 0.0


def load_reranker(name: str, *, store: Store, settings: Settings) -> tuple[Loaded, Rerank]:
    """The stored model `name` loaded to rerank, and the function that scores with it: a
    cross-encoder's own scores, or a chat model's query likelihood."""
    from owl.engine import capabilities_of
    from owl.pull import resolve

    manifest = resolve(name, store=store, settings=settings, pull_missing=True)
    if Capability.RERANK in capabilities_of(manifest, store=store):
        reranker = load(manifest, store=store, settings=settings, capability=Capability.RERANK)
        return reranker, reranker.rerank  # type: ignore[attr-defined]
    model = load(manifest, store=store, settings=settings, capability=Capability.SCORE)
    return model, partial(query_likelihoods, model)  # type: ignore[arg-type]
