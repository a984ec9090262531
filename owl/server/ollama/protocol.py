"""Ollama's request and response bodies (docs/api.md of ollama/ollama), and requests as Tasks.

Field names are Ollama's, so that the official `ollama` client and apps that speak
Ollama work unchanged. Fields owl cannot honour yet are accepted here and refused in one
place, owl/server/ollama/unsupported.py.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, NoReturn, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from owl.config import duration_seconds
from owl.engine import SamplingParams, tool_calls
from owl.engine.images import IMAGE_MARKER
from owl.engine.tool_calls import Tools
from owl.errors import InvalidPrompt
from owl.server.body_checks import ERROR_TYPE, MAX_DEPTH, body_problem
from owl.server.image_inputs import plain_text
from owl.server.responses import ResponseBody
from owl.server.serving import MAX_STOP, JsonOutput, Task

T = TypeVar("T", bound=BaseModel)


async def parse_body(request: Request, schema: type[T]) -> T:
    """The request's JSON body as `schema`, whatever its Content-Type.

    Ollama reads JSON bodies regardless of the header, and its documented examples
    (`curl … -d '{…}'`) send form-urlencoded: FastAPI's own body parsing would refuse them.
    Failures become RequestValidationError, which owl/server/errors.py maps to 400.
    """
    raw = await request.body()  # a client gone mid-body: errors.CatchAllMiddleware
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "invalid JSON", "input": None}]
        ) from None
    except RecursionError:  # the decoder recurses per level; the body nests past the stack
        _too_deep()
    if not isinstance(data, dict):
        raise RequestValidationError(
            [{"type": "model_type", "loc": ("body",), "msg": "not an object", "input": None}]
        )
    problem = body_problem(data)
    if problem is not None:
        _refuse(*problem)
    try:
        return schema.model_validate(data)
    except ValidationError as err:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in err.errors()]
        raise RequestValidationError(errors) from None


def _refuse(message: str, param: str | None) -> NoReturn:
    context = {"message": message, "param": param}
    raise RequestValidationError(
        [{"type": ERROR_TYPE, "loc": ("body",), "msg": message, "ctx": context, "input": None}]
    )


def _too_deep() -> NoReturn:
    _refuse(f"the request body nests deeper than {MAX_DEPTH} levels; flatten it", None)


def keep_alive_seconds(value: float | str | None) -> float | None:
    """Ollama's keep_alive in seconds; None: the server's default; negative: forever.

    A number is seconds; a string is a Go duration ("5m", "1h30m") or a number.
    """
    return None if value is None else duration_seconds(value)


def _bounded(name: str) -> Any:
    """A request field with SamplingParams' own bounds: out of range is a 400 naming it."""
    field = SamplingParams.model_fields[name]
    return Annotated[field.annotation, *field.metadata] | None


class Options(BaseModel):
    """Ollama's `options`. Load-time ones (num_ctx, num_thread, num_gpu, …) are ignored:
    owl sets those once per server (`owl serve --ctx --threads`)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)  # NaN passes every bound

    temperature: _bounded("temperature") = None
    top_k: _bounded("top_k") = None
    top_p: _bounded("top_p") = None
    min_p: _bounded("min_p") = None
    repeat_penalty: _bounded("repeat_penalty") = None
    presence_penalty: _bounded("presence_penalty") = None
    frequency_penalty: _bounded("frequency_penalty") = None
    seed: int | None = Field(default=None, lt=2**32 - 1)  # negative: random, as in Ollama
    num_predict: int | None = None
    stop: list[str] | None = Field(default=None, max_length=MAX_STOP)
    num_ctx: int | None = None

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def max_tokens(self) -> int | None:
        # Ollama: num_predict -1 is "until the model stops", -2 "until the context is full".
        return self.num_predict if self.num_predict and self.num_predict > 0 else None

    def given(self) -> dict[str, Any]:
        """The options as owl's sampling parameters (Ollama's conventions translated)."""
        seed = self.seed if self.seed is not None and self.seed >= 0 else None  # <0: random
        return {
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "min_p": self.min_p,
            "repeat_penalty": self.repeat_penalty,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "seed": seed,
            "stop": tuple(self.stop) if self.stop else None,
        }


class _ModelRequest(BaseModel):
    # Clients send fields owl does not use: accept and ignore them, as Ollama does.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=512)


class GenerationRequest(_ModelRequest):
    stream: bool = True  # Ollama streams unless told not to
    format: str | dict[str, Any] | None = None  # "json" or a JSON schema
    options: Options = Field(default_factory=Options)
    keep_alive: float | str | None = None
    think: bool | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None

    @field_validator("options", mode="before")
    @classmethod
    def _no_options(cls, value: Any) -> Any:
        return {} if value is None else value

    @field_validator("keep_alive")
    @classmethod
    def _keep_alive(cls, value: float | str | None) -> float | str | None:
        keep_alive_seconds(value)
        return value

    def _task(self, **prompt: Any) -> Task:
        """The serving core's task for `prompt` (messages, tools, or raw text)."""
        return Task(
            model=self.model,
            output=self._output(),
            sampling=self.options.given(),
            max_tokens=self.options.max_tokens(),
            keep_alive=keep_alive_seconds(self.keep_alive),
            **prompt,
        )

    def _output(self) -> JsonOutput | None:
        """`format`: "json", or a JSON schema the output must follow."""
        if self.format in (None, ""):
            return None
        if self.format == "json":
            return JsonOutput()
        if isinstance(self.format, dict):
            return JsonOutput(self.format)
        raise InvalidPrompt('format is "json" or a JSON schema object')


class ToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")
    function: dict[str, Any]


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = None
    images: list[str] | None = None
    tool_calls: list[ToolCall] | None = None
    tool_name: str | None = None
    thinking: str | None = None

    def as_template_input(self) -> dict[str, Any]:
        """The dict a chat template expects; tool calls and results in owl's generic
        format (owl/engine/tool_calls.py), which every template can carry."""
        content, role = self.content or "", self.role
        if self.images:  # the markers where the images go, before the text (image_inputs)
            content = IMAGE_MARKER * len(self.images) + plain_text(content)
        if self.tool_calls:
            calls = [{"function": call.function} for call in self.tool_calls]
            content = "\n".join(filter(None, [content, tool_calls.call_text(calls)]))
        if role == "tool":
            role, content = "user", tool_calls.result_text(content, self.tool_name)
        message: dict[str, Any] = {"role": role, "content": content}
        if self.tool_name and role != "user":
            message["name"] = self.tool_name
        return message


class ChatRequest(GenerationRequest):
    messages: list[Message] = Field(default_factory=list)
    tools: list[dict[str, Any]] | None = Field(default=None, max_length=128)

    def to_task(self) -> Task:
        """The serving core's task: the conversation, with its tools (as tool_choice "auto")."""
        functions = self.functions()
        return self._task(
            messages=[message.as_template_input() for message in self.messages],
            tools=Tools(tuple(functions), may_answer=True) if functions else None,
            images=tuple(image for message in self.messages for image in message.images or ()),
        )

    def functions(self) -> list[dict[str, Any]]:
        """The function definitions of `tools` (Ollama has no tool_choice: "auto")."""
        functions = []
        for tool in self.tools or []:
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                raise InvalidPrompt('each tool is {"type": "function", "function": {"name": …}}')
            functions.append(function)
        return functions


class GenerateRequest(GenerationRequest):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None

    def to_task(self) -> Task:
        """The serving core's task: the prompt as it is (raw), or as the user's message."""
        if self.raw:  # the prompt is already formatted; like Ollama, `system` is not used
            return self._task(prompt=self.prompt)
        messages = [{"role": "system", "content": self.system}] if self.system else []
        user = Message(role="user", content=self.prompt, images=self.images)
        return self._task(
            messages=[*messages, user.as_template_input()], images=tuple(self.images or ())
        )


class ShowRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=512)
    verbose: bool = False

    @model_validator(mode="before")
    @classmethod
    def _older_name(cls, data: Any) -> Any:
        # Before Ollama 0.4 the field was `name`; clients still send it.
        if isinstance(data, dict) and "model" not in data and "name" in data:
            return {**data, "model": data["name"]}
        return data


class PullRequest(ShowRequest):
    stream: bool = True
    insecure: bool = False


class EmbedRequest(_ModelRequest):
    input: str | list[str] | None = None
    prompt: str | None = None  # /api/embeddings, the older form
    truncate: bool | None = None
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None
    dimensions: int | None = None


# Responses. Fields in `omit_unset` are absent unless a route gives them (ResponseBody).


class FunctionCallBody(ResponseBody):
    name: str | None
    arguments: Any  # the JSON value itself, not its text as OpenAI sends


class ToolCallBody(ResponseBody):
    function: FunctionCallBody


class MessageBody(ResponseBody):
    omit_unset = frozenset({"tool_calls"})
    role: Literal["assistant"] = "assistant"
    content: str
    tool_calls: list[ToolCallBody] | None = None


class Done(ResponseBody):
    """How a reply ended: its reason, and with a generation its counts and durations (ns)."""

    omit_unset = frozenset(
        {
            "total_duration",
            "load_duration",
            "prompt_eval_count",
            "prompt_eval_duration",
            "eval_count",
            "eval_duration",
        }
    )
    done_reason: str | None = None
    total_duration: int | None = None
    load_duration: int | None = None
    prompt_eval_count: int | None = None
    prompt_eval_duration: int | None = None
    eval_count: int | None = None
    eval_duration: int | None = None


class _Reply(Done):
    # A chunk has no done_reason at all; the last reply has Done's fields it was given.
    omit_unset = Done.omit_unset | {"done_reason"}
    model: str
    created_at: str
    done: bool

    @classmethod
    def part(cls, *, done: Done | None, **fields: Any) -> Any:
        """A chunk (done None) or the last reply, with `done`'s fields beside the others."""
        if done is None:
            return cls(done=False, **fields)
        return cls(done=True, **fields, **done.model_dump())


class ChatReply(_Reply):
    message: MessageBody


class GenerateReply(_Reply):
    response: str


class EmbedReply(ResponseBody):
    model: str
    embeddings: list[list[float]]
    total_duration: int
    load_duration: int
    prompt_eval_count: int


class EmbeddingReply(ResponseBody):
    """/api/embeddings, the older form: one vector."""

    embedding: list[float]
