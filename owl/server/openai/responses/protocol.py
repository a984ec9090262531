"""OpenAI's Responses API bodies (the subset owl serves), and a request as the core's Task.

Input items are read into the chat API's messages (owl/server/openai/protocol.py's
ChatMessage), so that images, tool calls and tool results reach the chat template exactly
as they do from /v1/chat/completions; the request then becomes one serving-core Task.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from owl.engine.sampling import MAX_TOP_K
from owl.engine.tool_calls import Tools
from owl.errors import InvalidPrompt
from owl.server.body_checks import CheckedBody
from owl.server.openai.embedding_inputs import ImageUrl
from owl.server.openai.protocol import (
    ChatMessage,
    FunctionCall,
    FunctionDefinition,
    ImageUrlPart,
    TextPart,
    ToolCall,
)
from owl.server.responses import ResponseBody
from owl.server.serving import JsonOutput, Task

MAX_ITEMS = 1024  # input items in one request, stored turns included
MAX_METADATA = 16  # OpenAI's limit on metadata pairs


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore")


class InputText(_Part):
    type: Literal["input_text"]
    text: str


class OutputTextPart(_Part):
    """An earlier answer's text, as a stored or resent assistant message holds it."""

    type: Literal["output_text"]
    text: str


class InputImage(_Part):
    """An image: a data: URL, or a file under the server's image folder (as in chat)."""

    type: Literal["input_image"]
    image_url: str = Field(min_length=1)


ContentPart = Annotated[InputText | OutputTextPart | InputImage, Field(discriminator="type")]


class MessageItem(_Part):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]

    def chat_message(self) -> ChatMessage:
        if isinstance(self.content, str):
            return ChatMessage(role=self.role, content=self.content)
        parts: list[TextPart | ImageUrlPart] = [
            ImageUrlPart(type="image_url", image_url=ImageUrl(url=part.image_url))
            if isinstance(part, InputImage)
            else TextPart(type="text", text=part.text)
            for part in self.content
        ]
        return ChatMessage(role=self.role, content=parts)


class FunctionCallItem(_Part):
    """A call the model made earlier (an output item sent back, or stored)."""

    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=256)
    name: str = Field(max_length=256)
    arguments: str = "{}"

    def chat_message(self) -> ChatMessage:
        call = ToolCall(
            id=self.call_id, function=FunctionCall(name=self.name, arguments=self.arguments)
        )
        return ChatMessage(role="assistant", content=None, tool_calls=[call])


class FunctionCallOutputItem(_Part):
    """What the application's function returned for the call `call_id`."""

    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=256)
    output: str | list[InputText]

    def chat_message(self) -> ChatMessage:
        output = self.output
        text = output if isinstance(output, str) else "".join(part.text for part in output)
        return ChatMessage(role="tool", tool_call_id=self.call_id, content=text)


def _item_type(value: Any) -> str | None:
    # A message may leave out its type ({"role": "user", "content": "…"}).
    if isinstance(value, dict):
        return value.get("type", "message")
    return getattr(value, "type", None)


Item = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(_item_type),
]
ITEMS = TypeAdapter(list[Item])


class FunctionTool(FunctionDefinition):
    type: Literal["function"]
    strict: bool | None = None

    def definition(self) -> dict[str, Any]:
        """The function as owl's tool calls describe it (owl/engine/tool_calls.py)."""
        return self.model_dump(include={"name", "description", "parameters"}, exclude_none=True)


class FunctionChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    name: str


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    description: str | None = None
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: TextFormat | None = None


class ResponsesRequest(CheckedBody):
    """POST /v1/responses. Parameters owl does not use (reasoning, include, truncation,
    user, …) are accepted and ignored, as the chat API does."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=512)
    input: str | list[Item] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[FunctionTool] = Field(default_factory=list, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice = "auto"
    parallel_tool_calls: bool = False  # echoed: owl's grammar makes one call a turn
    text: TextConfig | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0, le=MAX_TOP_K)  # owl's, as in chat
    seed: int | None = Field(default=None, ge=0, lt=2**32 - 1)  # owl's, as in chat
    max_output_tokens: int | None = Field(default=None, ge=1)
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = Field(default=None, min_length=1, max_length=256)
    metadata: dict[str, str] | None = Field(default=None, max_length=MAX_METADATA)

    def items(self) -> list[Item]:
        """The request's input as items: a string is one user message."""
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    def to_task(self, items: list[Item]) -> Task:
        """The serving core's task for the conversation `items` (earlier turns first)."""
        if not items:
            raise InvalidPrompt("input is empty: give a string or at least one input item")
        if len(items) > MAX_ITEMS:
            raise InvalidPrompt(
                f"the conversation has {len(items)} items, more than {MAX_ITEMS}; "
                "start a new one without previous_response_id"
            )
        messages = [item.chat_message() for item in items]
        if self.instructions:
            messages.insert(0, ChatMessage(role="system", content=self.instructions))
        return Task(
            model=self.model,
            messages=[message.as_template_input() for message in messages],
            tools=self._tools(),
            output=self._output(),
            sampling={
                "temperature": self.temperature,
                "top_p": self.top_p,
                "top_k": self.top_k,
                "seed": self.seed,
            },
            max_tokens=self.max_output_tokens,
            images=tuple(url for message in messages for url in message.image_urls()),
        )

    def _tools(self) -> Tools | None:
        defined = tuple(tool.definition() for tool in self.tools)
        choice = self.tool_choice
        if choice == "none" or not defined:
            return None
        if choice == "required":
            return Tools(defined, may_answer=False)
        if isinstance(choice, FunctionChoice):
            named = tuple(function for function in defined if function["name"] == choice.name)
            if not named:
                raise InvalidPrompt(
                    f"tool_choice names '{choice.name}', which is not among the tools"
                )
            return Tools(named, may_answer=False)
        return Tools(defined, may_answer=True)  # "auto"

    def _output(self) -> JsonOutput | None:
        form = self.text.format if self.text else None
        if form is None or form.type == "text":
            return None
        if form.type == "json_object":
            return JsonOutput()
        if form.json_schema is None:
            raise InvalidPrompt("text.format json_schema needs a schema: text.format.schema")
        return JsonOutput(form.json_schema)

    def echoed(self) -> dict[str, Any]:
        """The request's fields a response object repeats."""
        form = self.text.format if self.text else None
        return {
            "instructions": self.instructions,
            "tools": [tool.model_dump(exclude_none=True) for tool in self.tools],
            "tool_choice": (
                self.tool_choice.model_dump()
                if isinstance(self.tool_choice, FunctionChoice)
                else self.tool_choice
            ),
            "parallel_tool_calls": self.parallel_tool_calls,
            "text": {
                "format": form.model_dump(by_alias=True, exclude_none=True)
                if form
                else {"type": "text"}
            },
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "previous_response_id": self.previous_response_id,
            "store": self.store,
            "metadata": self.metadata or {},
        }


# Response bodies.


class OutputText(ResponseBody):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class MessageBody(ResponseBody):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"]
    content: list[OutputText]


class CallBody(ResponseBody):
    id: str
    type: Literal["function_call"] = "function_call"
    call_id: str
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    status: Literal["in_progress", "completed", "incomplete"]


class InputTokensDetails(ResponseBody):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(ResponseBody):
    reasoning_tokens: int = 0


class UsageBody(ResponseBody):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


OutputItem = MessageBody | CallBody


class ResponseObject(ResponseBody):
    """A response, whole (POST, GET) or as a stream's lifecycle events carry it."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete"]
    error: None = None
    incomplete_details: dict[str, str] | None = None
    model: str
    output: list[OutputItem]
    usage: UsageBody | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]]
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    text: dict[str, Any]
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    store: bool
    metadata: dict[str, str]
