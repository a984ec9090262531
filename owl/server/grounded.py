"""Chat from documents: a task that names collections (`"documents": [NAME, …]`) gets the
chunks retrieved for its last user message quoted below that message, numbered, with owl's
instructions to answer from them and cite them (owl/docs/grounding.py, as `owl ask` does).

Several collections are searched each with its own embedding model and fused by reciprocal
rank, so no collection's scores need to be comparable with another's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from fastapi import Request

from owl.docs.ask import hit_json
from owl.docs.grounding import grounded_messages, location
from owl.docs.retrieve import reciprocal_rank_fusion
from owl.docs.types import Hit
from owl.errors import InvalidPrompt
from owl.server.documents import retrieve_from

if TYPE_CHECKING:
    from owl.server.serving import Task

MAX_COLLECTIONS = 8


def question_of(messages: list[dict[str, Any]]) -> str:
    """The text of the last user message (its text parts, for content parts)."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                part.get("text", "")
                for part in content
                if isinstance(part, dict) and part.get("type") == "text"
            )
    return ""


async def grounded(request: Request, task: Task) -> tuple[Task, tuple[Hit, ...]]:
    """`task` with its conversation grounded in its collections, and the sources given."""
    if task.messages is None:
        raise InvalidPrompt("'documents' works with chat messages; send 'messages'")
    if len(task.documents) > MAX_COLLECTIONS:
        raise InvalidPrompt(
            f"'documents' names {len(task.documents)} collections; name at most {MAX_COLLECTIONS}"
        )
    question = question_of(task.messages).strip()
    if not question:
        raise InvalidPrompt("'documents' needs a user message with text to search them for")
    rankings = []
    for name in dict.fromkeys(task.documents):
        found = await retrieve_from(request, name, question, k=task.documents_k, mode="hybrid")
        rankings.append(found.hits)
    hits = rankings[0] if len(rankings) == 1 else reciprocal_rank_fusion(rankings)
    hits = hits[: task.documents_k]
    return replace(task, messages=grounded_messages(task.messages, hits)), tuple(hits)


def sources_json(hits: tuple[Hit, ...]) -> list[dict[str, Any]]:
    """The sources as a response lists them: numbered as the prompt numbered them."""
    return [
        {"n": number, "location": location(hit), **hit_json(hit)}
        for number, hit in enumerate(hits, start=1)
    ]
