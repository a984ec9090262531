"""Tool calls for chat completions, on any chat template.

owl uses llama.cpp's generic tool-call format: the tools are described to the model in a
system message, and the output is constrained by a grammar to
{"tool_call": {"name": …, "arguments": {…}}} (or {"response": "…"} when the model may
answer in words, tool_choice "auto"). The output is parsed back into OpenAI's
`tool_calls`. Earlier tool calls and tool results in the conversation are written in the
same format, so any template — even one that knows nothing of tools — can carry them.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from owl.engine.grammar import json_grammar, tool_call_schema
from owl.errors import InvalidPrompt

PREAMBLE = (
    "You can call these tools (JSON schemas of their arguments):\n{tools}\n"
    'To call one, answer only with JSON: {{"tool_call": {{"name": "<tool name>", '
    '"arguments": {{...}}}}}}.{answer}'
)
ANSWER = ' To answer without a tool, answer with JSON: {"response": "<your answer>"}.'


def functions(tools: list[Any], choice: Any) -> tuple[list[dict[str, Any]], bool]:
    """The function definitions the model may call, and whether it may answer instead."""
    defined = [tool.function.model_dump(exclude_none=True) for tool in tools]
    if choice == "none" or not defined:
        return [], True
    if choice == "required":
        return defined, False
    if isinstance(choice, dict) or hasattr(choice, "function"):
        name = choice["function"]["name"] if isinstance(choice, dict) else choice.function.name
        named = [function for function in defined if function["name"] == name]
        if not named:
            raise InvalidPrompt(f"tool_choice names '{name}', which is not among the tools")
        return named, False
    return defined, True  # "auto"


def grammar(tools: list[dict[str, Any]], *, may_answer: bool) -> str:
    return json_grammar(tool_call_schema(tools, may_answer=may_answer))


def system_message(tools: list[dict[str, Any]], *, may_answer: bool) -> dict[str, Any]:
    described = "\n".join(
        json.dumps(
            {
                "name": tool["name"],
                "description": tool.get("description", ""),
                "parameters": tool.get("parameters") or {"type": "object"},
            }
        )
        for tool in tools
    )
    return {
        "role": "system",
        "content": PREAMBLE.format(tools=described, answer=ANSWER if may_answer else ""),
    }


def with_tools(
    messages: list[dict[str, Any]], tools: list[dict[str, Any]], *, may_answer: bool
) -> list[dict[str, Any]]:
    """`messages` with the tools described in the (first) system message."""
    preamble = system_message(tools, may_answer=may_answer)
    if messages and messages[0]["role"] == "system":
        first = dict(messages[0])
        first["content"] = f"{first['content']}\n\n{preamble['content']}"
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


def parse(text: str) -> tuple[str | None, list[dict[str, Any]]]:
    """The model's constrained output → (content, tool_calls)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return text, []  # cut short (max_tokens): give what there is as text
    if isinstance(value, dict) and isinstance(value.get("tool_call"), dict):
        call = value["tool_call"]
        return None, [
            {
                "id": f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {
                    "name": call.get("name"),
                    "arguments": json.dumps(call.get("arguments", {})),
                },
            }
        ]
    if isinstance(value, dict) and isinstance(value.get("response"), str):
        return value["response"], []
    return text, []
