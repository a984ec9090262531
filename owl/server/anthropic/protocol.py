"""Anthropic's Messages API bodies (the subset owl serves), and requests as Tasks.

Field names are Anthropic's, so that the official `anthropic` client works unchanged. A
request validates itself once, then becomes the serving core's Task (`to_task()`); tool
calls and results are written in owl's generic tool-call format (owl/engine/tool_calls.py),
images become data: URLs for the core's image inputs. Fields owl has no use for (metadata,
cache_control, thinking, service_tier, …) are accepted and ignored (docs/anthropic.md).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from owl.engine import tool_calls
from owl.engine.images import IMAGE_MARKER
from owl.engine.sampling import MAX_TOP_K
from owl.engine.tool_calls import Tools
from owl.errors import InvalidImage, InvalidPrompt
from owl.server.body_checks import CheckedBody
from owl.server.image_inputs import plain_text
from owl.server.responses import ResponseBody
from owl.server.serving import MAX_STOP, JsonOutput, Task

MAX_TOOLS = 128


class _Block(BaseModel):
    model_config = ConfigDict(extra="ignore")  # cache_control, citations: ignored


class TextBlock(_Block):
    type: Literal["text"]
    text: str


class Base64Source(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["base64"]
    media_type: Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
    data: str = Field(min_length=1)


class UrlSource(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["url"]
    url: str


class ImageBlock(_Block):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource, Field(discriminator="type")]

    def data_url(self) -> str:
        """The image as a data: URL, what the serving core decodes (owl/server/image_inputs.py)."""
        source = self.source
        if isinstance(source, UrlSource):
            raise InvalidImage(
                "an image with source type 'url': owl never fetches a URL a request names; "
                "send the image's bytes as source type 'base64'"
            )
        return f"data:{source.media_type};base64,{source.data}"


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str = Field(min_length=1, max_length=256)
    name: str = Field(min_length=1, max_length=256)
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(_Block):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1, max_length=256)
    content: list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] | str = ""
    is_error: bool = False


ContentBlock = Annotated[
    TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")
]
# The blocks each role may send: the model answers in words and tool calls; the user
# sends words, images and tool results.
_ALLOWED = {"user": ("text", "image", "tool_result"), "assistant": ("text", "tool_use")}
_KNOWN = ("text", "image", "tool_use", "tool_result")


class Message(BaseModel):
    # The list first: a block's own error is the one reported, not "not a string".
    model_config = ConfigDict(extra="ignore")
    role: Literal["user", "assistant"]
    content: list[ContentBlock] | str

    @field_validator("content", mode="before")
    @classmethod
    def _known_blocks(cls, value: Any) -> Any:
        for block in value if isinstance(value, list) else []:
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in _KNOWN:
                raise ValueError(
                    f"owl takes content blocks of type {', '.join(_KNOWN)}, not {kind!r} "
                    "(documents, thinking and server tools' blocks are not served)"
                )
        return value

    @model_validator(mode="after")
    def _blocks_of_its_role(self) -> Message:
        allowed = _ALLOWED[self.role]
        for block in self.content if isinstance(self.content, list) else []:
            if block.type not in allowed:
                raise ValueError(
                    f"a {self.role} message cannot hold a '{block.type}' block; "
                    f"it takes {', '.join(allowed)}"
                )
        return self


class Tool(BaseModel):
    """A tool the model may call; owl runs none of Anthropic's server tools."""

    model_config = ConfigDict(extra="ignore")
    type: str | None = None
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str | None = None
    input_schema: dict[str, Any]

    @field_validator("type")
    @classmethod
    def _custom_only(cls, value: str | None) -> str | None:
        if value not in (None, "custom"):
            raise ValueError(
                f"owl runs no server tools ('{value}'); define the tool yourself with a "
                "name and an input_schema, and run it on the client"
            )
        return value

    @field_validator("input_schema")
    @classmethod
    def _object_schema(cls, value: dict[str, Any]) -> dict[str, Any]:
        if value.get("type") != "object":
            raise ValueError('input_schema must be a JSON schema with "type": "object"')
        return value

    def function(self) -> dict[str, Any]:
        """The tool as owl's tool-call format describes it (owl/engine/tool_calls.py)."""
        described = {"name": self.name, "parameters": self.input_schema}
        if self.description:
            described["description"] = self.description
        return described


class ToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")  # disable_parallel_tool_use: owl calls one
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None

    @model_validator(mode="after")
    def _named(self) -> ToolChoice:
        if self.type == "tool" and not self.name:
            raise ValueError('tool_choice {"type": "tool"} needs the tool\'s "name"')
        return self


class OutputFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["json_schema"]
    json_schema: dict[str, Any] = Field(alias="schema")


class OutputConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")  # effort: owl has one
    format: OutputFormat | None = None


class _Conversation(CheckedBody):
    """What count_tokens and a message share: the model, the conversation, the tools."""

    # Clients send fields owl has no use for (metadata, thinking, …): ignored, as the
    # OpenAI routes do. NaN and infinity pass every bound: refused as not finite.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=512)
    messages: list[Message] = Field(min_length=1)
    system: list[TextBlock] | str | None = None
    tools: list[Tool] | None = Field(default=None, max_length=MAX_TOOLS)
    tool_choice: ToolChoice | None = None

    def _conversation(self) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        """The chat template's messages, and the images their markers stand for, in order."""
        images: list[str] = []
        messages = []
        system = self.system
        if isinstance(system, list):
            system = "\n".join(block.text for block in system)
        if system:
            messages.append({"role": "system", "content": plain_text(system)})
        for message in self.messages:
            blocks = message.content
            if isinstance(blocks, str):
                blocks = [TextBlock(type="text", text=blocks)]
            content = _joined([_rendered(block, images) for block in blocks])
            messages.append({"role": message.role, "content": content})
        return messages, tuple(images)

    def _tools(self) -> Tools | None:
        """The functions the model may call, and whether it may answer in words instead."""
        defined = tuple(tool.function() for tool in self.tools or [])
        choice = self.tool_choice.type if self.tool_choice else "auto"
        if choice == "none" or not defined:
            return None
        if choice == "any":
            return Tools(defined, may_answer=False)
        if choice == "tool":
            name = self.tool_choice.name  # type: ignore[union-attr]
            named = tuple(function for function in defined if function["name"] == name)
            if not named:
                raise InvalidPrompt(f"tool_choice names '{name}', which is not among the tools")
            return Tools(named, may_answer=False)
        return Tools(defined, may_answer=True)  # "auto"


def _rendered(block: Any, images: list[str]) -> tuple[bool, str]:
    """(whether it stands on a line of its own, its text): text as it is, an image as the
    marker where it goes (its data: URL added to `images`), tool calls and results in owl's
    tool-call format."""
    if isinstance(block, TextBlock):
        return False, plain_text(block.text)
    if isinstance(block, ImageBlock):
        images.append(block.data_url())
        return False, IMAGE_MARKER
    if isinstance(block, ToolUseBlock):
        call = {"function": {"name": block.name, "arguments": block.input}}
        return True, plain_text(tool_calls.call_text([call]))
    assert isinstance(block, ToolResultBlock)
    parts = [block.content] if isinstance(block.content, str) else block.content
    text = "".join(
        plain_text(part) if isinstance(part, str) else _rendered(part, images)[1] for part in parts
    )
    if block.is_error:
        text = f"error: {text}"
    return True, tool_calls.result_text(text, block.tool_use_id)


def _joined(pieces: list[tuple[bool, str]]) -> str:
    """Text and images run together; a tool call or result gets a line of its own."""
    text = ""
    for index, (own_line, piece) in enumerate(pieces):
        if index and (own_line or pieces[index - 1][0]):
            text += "\n"
        text += piece
    return text


class MessagesRequest(_Conversation):
    """POST /v1/messages: max_tokens is required, as Anthropic requires it. The sampling
    fields, which the `anthropic` client no longer names, come through its extra_body."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = Field(default=None, max_length=MAX_STOP)
    stream: bool = False
    output_config: OutputConfig | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=1.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=MAX_TOP_K)

    def to_task(self) -> Task:
        """The serving core's task: the conversation, its tools, one choice."""
        messages, images = self._conversation()
        stop = tuple(item for item in self.stop_sequences or () if item)
        return Task(
            model=self.model,
            messages=messages,
            tools=self._tools(),
            sampling={
                "temperature": self.temperature,
                "top_p": self.top_p,
                "top_k": self.top_k,
                "stop": stop or None,
            },
            max_tokens=self.max_tokens,
            images=images,
            output=self._output(),
        )

    def _output(self) -> JsonOutput | None:
        form = self.output_config.format if self.output_config else None
        return None if form is None else JsonOutput(form.json_schema)


class CountTokensRequest(_Conversation):
    """POST /v1/messages/count_tokens: the conversation, without generation's fields."""

    def to_task(self) -> Task:
        """The task whose prompt is counted, as a message request would evaluate it."""
        messages, images = self._conversation()
        return Task(model=self.model, messages=messages, tools=self._tools(), images=images)


# Responses.


class TextContent(ResponseBody):
    type: Literal["text"] = "text"
    text: str


class ToolUseContent(ResponseBody):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: Any


class UsageBody(ResponseBody):
    input_tokens: int
    output_tokens: int


class MessageBody(ResponseBody):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextContent | ToolUseContent]
    stop_reason: str | None
    stop_sequence: str | None
    usage: UsageBody
