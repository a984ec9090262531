"""What a task asks of a model and what the model gives back: plain data, no model in sight.

A task turns each row of its evaluation split into a Question holding one or more Requests;
an EvalModel answers the Requests (owl.evals.models); the task scores the Answers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["loglikelihood", "generate_until", "loglikelihood_rolling"]


@dataclass(frozen=True)
class Request:
    """One call to a model."""

    kind: Kind
    context: str  # the prompt (few-shot examples included); rolling: the text to score
    continuation: str = ""  # loglikelihood: the choice, with its target_delimiter in front
    until: tuple[str, ...] = ()  # generate_until: stop sequences
    max_tokens: int = 256  # generate_until
    chat: bool = False  # generate_until: send the context as one user chat message
    schema: dict[str, Any] | None = None  # the JSON schema the answer must follow
    tools: list[dict[str, Any]] | None = None  # OpenAI function tools (tool-call tasks)


@dataclass(frozen=True)
class Answer:
    """What a model gave back for one Request."""

    logprob: float | None = None  # loglikelihood / rolling: summed log-probability (natural log)
    greedy: bool | None = None  # loglikelihood: the continuation is the greedy decode
    text: str | None = None  # generate_until
    tool_calls: list[dict[str, Any]] | None = None  # [{"name", "arguments": dict}]
    tokens: int = 0  # tokens the model processed or generated for this request (speed)


@dataclass(frozen=True)
class Question:
    """One row of a task's evaluation split, as the requests that score it."""

    index: int  # position in the task's evaluation split
    doc: dict[str, Any]  # the raw row (kept in the per-question JSONL)
    requests: tuple[Request, ...]  # multiple_choice: one per choice; others: one
    target: Any  # multiple choice: the gold choice index (or indices); else the gold value
