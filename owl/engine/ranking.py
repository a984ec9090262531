"""What every reranker checks of a request: a query, and between 1 and MAX_DOCUMENTS
documents (a cross-encoder's and a chat model's query likelihood alike)."""

from __future__ import annotations

from collections.abc import Sequence

from owl.errors import InvalidPrompt

MAX_DOCUMENTS = 256  # per call; more is the caller's to split


def check_rerank(query: str, documents: Sequence[str]) -> None:
    """InvalidPrompt, saying what to send, for an empty query or too few or many documents."""
    if not query.strip():
        raise InvalidPrompt("'query' is empty; send the text to rank the documents by")
    if not documents:
        raise InvalidPrompt("'documents' is empty; send at least one document to rank")
    if len(documents) > MAX_DOCUMENTS:
        raise InvalidPrompt(f"{len(documents)} documents; rank at most {MAX_DOCUMENTS} at once")
