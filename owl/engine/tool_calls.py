"""Tool calls on any chat template: how tools are offered, and how a call is read back.

owl uses llama.cpp's generic tool-call format: the tools are described to the model in a
system message, and the output is constrained by a grammar to
{"tool_call": {"name": …, "arguments": {…}}} (or {"response": "…"} when the model may
answer in words). Earlier tool calls and tool results in the conversation are written in
the same format, so any template — even one that knows nothing of tools — can carry them.
Each API translates its own tool fields to and from these (owl/server/openai/, ollama/);
owl eval offers a task's tools the same way (owl/evals/models/engine.py).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from owl.engine.grammar import json_grammar, tool_call_schema

PREAMBLE = (
    "You can call these tools (JSON schemas of their arguments):\n{tools}\n"
    'To call one, answer only with JSON: {{"tool_call": {{"name": "<tool name>", '
    '"arguments": {{...}}}}}}.{answer}'
)
ANSWER = ' To answer without a tool, answer with JSON: {"response": "<your answer>"}.'


@dataclass(frozen=True)
class Tools:
    """The functions a generation may call, and whether it may answer in words instead."""

    functions: tuple[dict[str, Any], ...]
    may_answer: bool = True


@dataclass(frozen=True)
class ToolCall:
    """A call the model made: `arguments` is the JSON value it wrote."""

    id: str
    name: str | None
    arguments: Any


def grammar(tools: Tools) -> str:
    return json_grammar(tool_call_schema(list(tools.functions), may_answer=tools.may_answer))


def system_message(tools: Tools) -> dict[str, Any]:
    described = "\n".join(
        json.dumps(
            {
                "name": tool["name"],
                "description": tool.get("description", ""),
                "parameters": tool.get("parameters") or {"type": "object"},
            }
        )
        for tool in tools.functions
    )
    return {
        "role": "system",
        "content": PREAMBLE.format(tools=described, answer=ANSWER if tools.may_answer else ""),
    }


def with_tools(messages: list[dict[str, Any]], tools: Tools) -> list[dict[str, Any]]:
    """`messages` with the tools described in the (first) system message."""
    preamble = system_message(tools)
    if messages and messages[0]["role"] == "system":
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{preamble['content']}"}
        return [first, *messages[1:]]
    return [preamble, *messages]


def call_text(tool_calls: list[dict[str, Any]]) -> str:
    """An assistant's earlier tool calls, written as the model is asked to write them."""
    parts = []
    for call in tool_calls:
        function = call.get("function") or {}
        arguments = function.get("arguments") or "{}"
        try:
            arguments = json.loads(arguments) if isinstance(arguments, str) else arguments
        except json.JSONDecodeError:
            pass
        parts.append(
            json.dumps({"tool_call": {"name": function.get("name"), "arguments": arguments}})
        )
    return "\n".join(parts)


def result_text(content: str, tool_call_id: str | None) -> str:
    """A tool's result, for templates that have no tool role."""
    return f"Tool result{f' ({tool_call_id})' if tool_call_id else ''}: {content}"


def parse(text: str) -> tuple[str | None, tuple[ToolCall, ...]]:
    """The model's constrained output → (content, tool calls)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text, ()  # cut short (max_tokens): give what there is as text
    if isinstance(value, dict) and isinstance(value.get("tool_call"), dict):
        call = value["tool_call"]
        ident = f"call_{uuid.uuid4().hex[:24]}"
        return None, (ToolCall(ident, call.get("name"), call.get("arguments", {})),)
    if isinstance(value, dict) and isinstance(value.get("response"), str):
        return value["response"], ()
    return text, ()
