"""OpenAI's response bodies (the subset owl serves): what the routes turn the serving core's
results into (owl/server/openai/routes.py). Fields in `omit_unset` are absent unless a route
gives them (ResponseBody)."""

from __future__ import annotations

from typing import Any, Literal

from owl.server.responses import ResponseBody


class UsageBody(ResponseBody):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(ResponseBody):
    token: str
    logprob: float
    bytes: list[int]


class TokenLogprobBody(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChatLogprobs(ResponseBody):
    content: list[TokenLogprobBody]
    refusal: None = None


class CompletionLogprobs(ResponseBody):
    """The completions API's legacy logprobs: parallel lists, one entry per token."""

    tokens: list[str]
    token_logprobs: list[float | None]
    top_logprobs: list[dict[str, float] | None]
    text_offset: list[int]


class FunctionCallBody(ResponseBody):
    name: str | None
    arguments: str  # JSON text, as OpenAI sends it


class ToolCallBody(ResponseBody):
    omit_unset = frozenset({"index"})
    index: int | None = None  # streamed deltas only
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallBody


class AssistantMessage(ResponseBody):
    omit_unset = frozenset({"role", "content", "tool_calls"})
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallBody] | None = None


class ChatChoiceBody(ResponseBody):
    omit_unset = frozenset({"citations"})

    index: int
    message: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None
    citations: list[int] | None = None  # owl's, with "documents": the sources it cites


class ChatCompletion(ResponseBody):
    omit_unset = frozenset({"sources"})

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoiceBody]
    usage: UsageBody | None
    sources: list[dict[str, Any]] | None = None  # owl's, with "documents": what it was given


class ChunkChoice(ResponseBody):
    omit_unset = frozenset({"citations"})

    index: int
    delta: AssistantMessage
    logprobs: ChatLogprobs | None = None
    finish_reason: str | None = None
    # owl's, with "documents", on a choice's finishing chunk: the sources its whole text
    # cites (a streamed citation that names no source cannot be taken back, only left out)
    citations: list[int] | None = None


class ChatCompletionChunk(ResponseBody):
    omit_unset = frozenset({"usage", "sources"})
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: UsageBody | None = None
    sources: list[dict[str, Any]] | None = None  # owl's, on the first chunk, with "documents"


class CompletionChoiceBody(ResponseBody):
    index: int
    text: str
    logprobs: CompletionLogprobs | None = None
    finish_reason: str | None = None


class Completion(ResponseBody):
    """A completion, or one chunk of a streamed one (the same object)."""

    omit_unset = frozenset({"usage"})
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoiceBody]
    usage: UsageBody | None = None


class ModelCard(ResponseBody):
    omit_unset = frozenset({"adapter_of"})
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "owl"
    adapter_of: str | None = None  # a LoRA adapter's base ("" when not recorded)


class ModelList(ResponseBody):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class EmbeddingBody(ResponseBody):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str  # base64 of little-endian float32, when asked


class EmbeddingUsage(ResponseBody):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(ResponseBody):
    object: Literal["list"] = "list"
    data: list[EmbeddingBody]
    model: str
    usage: EmbeddingUsage
