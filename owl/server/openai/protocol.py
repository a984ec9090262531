"""OpenAI's request bodies (the subset owl serves), and requests as Tasks.

A request validates itself once, then becomes the serving core's Task (`to_task()`); the
core's results come back as the response models of owl/server/openai/bodies.py.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from owl.engine import tool_calls
from owl.engine.images import IMAGE_MARKER
from owl.engine.sampling import MAX_TOP_K
from owl.engine.tool_calls import Tools
from owl.errors import InvalidPrompt
from owl.server.body_checks import CheckedBody
from owl.server.image_inputs import plain_text
from owl.server.openai.embedding_inputs import EmbeddingPart, ImageUrl
from owl.server.serving import MAX_STOP, JsonOutput, Task

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

    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def given(self) -> dict[str, Any]:
        """The sampling values the request gave (None: the model's default)."""
        return {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "frequency_penalty": self.frequency_penalty,
            "presence_penalty": self.presence_penalty,
            "seed": self.seed,
            "stop": tuple(self.stop) if self.stop else None,
        }


class StreamOptions(BaseModel):
    include_usage: bool = False


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ImageUrlPart(BaseModel):
    """An image in a chat message: a data: URL, or a file under the server's image folder."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["image_url"]
    image_url: ImageUrl


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
    content: str | list[TextPart | ImageUrlPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    def image_urls(self) -> list[str]:
        parts = self.content if isinstance(self.content, list) else []
        return [part.image_url.url for part in parts if isinstance(part, ImageUrlPart)]

    def as_template_input(self) -> dict[str, Any]:
        """The dict a chat template expects: text parts joined (an image part as the marker
        where the image goes: image_urls), developer read as system."""
        content = self.content
        if isinstance(content, list):
            content = "".join(
                plain_text(part.text) if isinstance(part, TextPart) else IMAGE_MARKER
                for part in content
            )
        content = content or ""
        role = "system" if self.role == "developer" else self.role
        # Tool calls and results in owl's generic format (owl/engine/tool_calls.py), which
        # every chat template can carry.
        if self.tool_calls:
            calls = [call.model_dump() for call in self.tool_calls]
            content = "\n".join(filter(None, [content, tool_calls.call_text(calls)]))
        if role == "tool":
            role, content = "user", tool_calls.result_text(content, self.tool_call_id)
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
    # owl's: answer from these document collections (owl docs add), citing them.
    documents: list[str] = Field(default_factory=list, max_length=8)
    documents_k: int = Field(default=5, ge=1, le=20)

    def to_task(self) -> Task:
        """The serving core's task: the conversation, its tools or JSON format, n choices."""
        return Task(
            model=self.model,
            messages=[message.as_template_input() for message in self.messages],
            tools=self._tools(),
            output=self._output(),
            sampling=self.given(),
            max_tokens=(self.max_completion_tokens or self.max_tokens) or None,
            n=self.n,
            logprobs=(self.top_logprobs or 0) if self.logprobs else None,
            cache_prompt=self.cache_prompt,
            images=tuple(url for message in self.messages for url in message.image_urls()),
            documents=tuple(self.documents),
            documents_k=self.documents_k,
        )

    def _tools(self) -> Tools | None:
        """The functions the model may call, and whether it may answer in words instead."""
        defined = tuple(tool.function.model_dump(exclude_none=True) for tool in self.tools or [])
        choice = self.tool_choice or "auto"
        if choice == "none" or not defined:
            return None
        if choice == "required":
            return Tools(defined, may_answer=False)
        if isinstance(choice, NamedToolChoice):
            name = choice.function.name
            named = tuple(function for function in defined if function["name"] == name)
            if not named:
                raise InvalidPrompt(f"tool_choice names '{name}', which is not among the tools")
            return Tools(named, may_answer=False)
        return Tools(defined, may_answer=True)  # "auto"

    def _output(self) -> JsonOutput | None:
        form = self.response_format
        if form is None or form.type == "text":
            return None
        if form.type == "json_object":
            return JsonOutput()
        if form.json_schema is None or form.json_schema.json_schema is None:
            raise InvalidPrompt("response_format json_schema needs json_schema.schema")
        return JsonOutput(form.json_schema.json_schema)


Prompt = str | list[int]  # text, or text already as token ids (as lm-eval sends them)
MAX_PROMPTS = 64  # prompts in one completions request (each with its n choices)


class CompletionRequest(_Request):
    prompt: str | list[str] | list[int] | list[list[int]] = Field(
        description="A prompt (text or token ids), or a list of them: n choices each."
    )
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
    def _prompts(cls, value: Any) -> list[Prompt]:
        if isinstance(value, str) or (value and all(isinstance(v, int) for v in value)):
            value = [value]
        if not value or len(value) > MAX_PROMPTS:
            raise ValueError(f"give 1 to {MAX_PROMPTS} prompts")
        return value

    def prompts(self) -> list[Prompt]:
        assert isinstance(self.prompt, list)
        return self.prompt  # type: ignore[return-value]

    def to_tasks(self) -> list[Task]:
        """One serving-core task per prompt, scored (echo with logprobs) or not."""
        return [self.to_task(prompt) for prompt in self.prompts()]

    def to_task(self, prompt: Prompt) -> Task:
        """The serving core's task for one prompt, scored (echo with logprobs) or not."""
        if self.max_tokens == 0 and not self.echo:
            raise InvalidPrompt("max_tokens 0 only makes sense with echo (to score the prompt)")
        return Task(
            model=self.model,
            prompt=prompt if isinstance(prompt, str) else None,
            tokens=None if isinstance(prompt, str) else tuple(prompt),
            sampling=self.given(),
            max_tokens=self.max_tokens or None,  # 0: score only (echo)
            n=self.n,
            logprobs=self.logprobs,
            prompt_logprobs=self.logprobs if self.echo and self.logprobs is not None else None,
            sample=self.max_tokens != 0,
            cache_prompt=self.cache_prompt,
        )


class EmbeddingRequest(CheckedBody):
    """OpenAI's embeddings request: texts, or texts already as token ids; owl also takes
    images among the texts, for image embedding models (owl/server/openai/embedding_inputs.py)."""

    model_config = ConfigDict(extra="ignore")  # `user` and what else clients send

    model: str = Field(min_length=1, max_length=512)
    input: str | list[str] | list[int] | list[list[int]] | list[str | EmbeddingPart]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)


_Request.model_rebuild()
