"""OpenAI-compatible request and response bodies (the subset owl serves)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from owl.engine import Model, SamplingParams
from owl.engine.grammar import json_grammar
from owl.engine.sampling import MAX_TOP_K
from owl.errors import InvalidPrompt
from owl.server import openai_tools
from owl.server.body_checks import CheckedBody

MAX_STOP = 16
MAX_CHOICES = 8
MAX_TOP_LOGPROBS = 20


class _Request(CheckedBody):
    # Clients send parameters owl does not use (user, logit_bias, …): accept and ignore
    # them, as llama.cpp's server does, rather than break those clients. NaN and infinity
    # pass every bound (comparisons with NaN are false): refused as not finite.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=512)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=MAX_TOP_K)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    repeat_penalty: float | None = Field(default=None, gt=0.0, le=10.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    seed: int | None = Field(default=None, ge=0, lt=2**32 - 1)
    stop: str | list[str] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES, description="Choices, generated in one batch.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    # llama-server's field: false evaluates the whole prompt, never a slot's cached prefix,
    # so that the answer cannot depend on earlier requests (docs/serve.md).
    cache_prompt: bool = True

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value: str | list[str] | None) -> list[str] | None:
        if isinstance(value, str):
            value = [value]
        if value is not None and len(value) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences")
        return value

    def sampling(
        self,
        model: Model,
        *,
        max_tokens: int | None = None,
        grammar: str | None = None,
        logprobs: int | None = None,
    ) -> SamplingParams:
        """The request's sampling parameters over `model`'s defaults.

        `max_tokens` overrides the request's own (chat's newer max_completion_tokens).
        """
        return model.sampling(
            grammar=grammar,
            logprobs=logprobs,
            temperature=self.temperature,
            top_p=self.top_p,
            top_k=self.top_k,
            min_p=self.min_p,
            repeat_penalty=self.repeat_penalty,
            frequency_penalty=self.frequency_penalty,
            presence_penalty=self.presence_penalty,
            seed=self.seed,
            stop=tuple(self.stop) if self.stop else None,
            max_tokens=(max_tokens or self.max_tokens) or None,  # 0: score only (echo)
        )


class StreamOptions(BaseModel):
    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(max_length=256)
    arguments: str | dict[str, Any] = "{}"


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def as_template_input(self) -> dict[str, Any]:
        """The dict a chat template expects: text parts joined, developer read as system."""
        content = self.content
        if isinstance(content, list):
            content = "".join(part.text for part in content)
        content = content or ""
        role = "system" if self.role == "developer" else self.role
        # Tool calls and results in owl's generic format (owl/server/openai_tools.py), which
        # every chat template can carry.
        if self.tool_calls:
            calls = [call.model_dump() for call in self.tool_calls]
            content = "\n".join(filter(None, [content, openai_tools.call_text(calls)]))
        if role == "tool":
            role, content = "user", openai_tools.result_text(content, self.tool_call_id)
        message: dict[str, Any] = {"role": role, "content": content}
        if self.name:
            message["name"] = self.name
        return message


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: FunctionDefinition


class NamedFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: NamedFunction


class JSONSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class ChatCompletionRequest(_Request):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None

    def output_grammar(self) -> tuple[str | None, list[dict[str, Any]], bool]:
        """The grammar the output must follow, the tools it may call, and whether it may
        answer in words instead."""
        tools, may_answer = openai_tools.functions(self.tools or [], self.tool_choice or "auto")
        if tools:
            return openai_tools.grammar(tools, may_answer=may_answer), tools, may_answer
        form = self.response_format
        if form is None or form.type == "text":
            return None, [], True
        if form.type == "json_object":
            return json_grammar(), [], True
        if form.json_schema is None or form.json_schema.json_schema is None:
            raise InvalidPrompt("response_format json_schema needs json_schema.schema")
        return json_grammar(form.json_schema.json_schema), [], True

    def logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(_Request):
    prompt: str | list[str] = Field(description="One prompt (a list of one is accepted).")
    # OpenAI's default for completions; 0 with echo scores the prompt only.
    max_tokens: int | None = Field(default=16, ge=0)
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    echo: bool = False

    @field_validator("max_tokens", mode="before")
    @classmethod
    def _default_max_tokens(cls, value: Any) -> Any:
        # An explicit null is "not given" (the OpenAI clients send it), not "unlimited".
        return 16 if value is None else value

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str:
        if isinstance(value, list):
            if len(value) != 1:
                raise ValueError("owl takes one prompt per request; send a string")
            value = value[0]
        return value


class UsageBody(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


_Request.model_rebuild()
