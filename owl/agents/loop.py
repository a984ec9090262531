"""The tool loop: the model calls tools, their results are fed back, until it answers in words.

Each round offers the tools in owl's generic tool-call format (owl/engine/tool_calls.py) and
constrains the output with its grammar, so any chat template and any small model can call
them. Calls and results are written into the conversation as the server writes them
(owl/server/openai/protocol.py: a call as the assistant's JSON, a result as a user turn).
After `max_rounds` rounds of calls, or when it only repeats calls it has made, the model is
asked once more with only an answer allowed, so the loop always ends with words.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from owl.engine import Model, SamplingParams
from owl.engine import tool_calls as tc
from owl.engine.grammar import json_grammar
from owl.errors import ConfigError

DECLINED = "The user declined to run this tool; answer without its result."
FINAL = "No more tools. Now answer my question in words, using the tool results above."
NEXT = "Use this result to answer my question (or call another tool if you need one)."
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"response": {"type": "string"}},
    "required": ["response"],
}


@dataclass(frozen=True)
class CallRecord:
    """One tool call the model made, and what it got back."""

    name: str
    arguments: Any
    result: str
    ran: bool


@dataclass(frozen=True)
class ToolAnswer:
    """The model's final answer, every call it made on the way, and the conversation: the
    given messages, each call and result, and the answer (a chat continues from it)."""

    text: str
    calls: tuple[CallRecord, ...]
    rounds: int
    messages: tuple[dict[str, Any], ...]


def answer_with_tools(
    model: Model,
    messages: list[dict[str, Any]],
    tools: Any,
    *,
    params: SamplingParams,
    max_rounds: int = 5,
    confirm: Callable[[tc.ToolCall], bool] | None = None,
    show: Callable[[tc.ToolCall], None] | None = None,
    require_tool: bool = False,
) -> ToolAnswer:
    """Answer `messages` with `model`, letting it call `tools` (an object with `functions`
    (owl tool dicts) and `call(name, arguments) -> str`, e.g. owl.agents.mcp.McpTools).

    Each call is passed to `show` first, then to `confirm` (False: it does not run, and the
    model is told so). At most `max_rounds` rounds call tools; then the model answers without
    them. `require_tool` makes the first round call a tool (no answer in words).
    """
    if max_rounds < 1:
        raise ConfigError(f"max_rounds is {max_rounds}; give at least 1 round of tool calls")
    conversation = list(messages)
    functions = tuple(tools.functions)
    records: list[CallRecord] = []
    if not functions:
        return _answered(_generate(model, conversation, params), records, 1, conversation)
    for round_number in range(1, max_rounds + 1):
        offered = tc.Tools(functions, may_answer=not (require_tool and round_number == 1))
        grammar = tc.grammar(offered)
        text = _generate(
            model,
            tc.with_tools(conversation, offered),
            params.model_copy(update={"grammar": grammar}),
        )
        content, calls = tc.parse(text)
        if not calls:
            return _answered(content or "", records, round_number, conversation)
        if all(_key(call) in {_key(r) for r in records} for call in calls):
            # Asking again for what it already has: small models loop so; make it answer.
            return _final(model, conversation, params, records, round_number)
        for call in calls:
            record = _run(call, tools, confirm=confirm, show=show)
            records.append(record)
            conversation.append({"role": "assistant", "content": _call_text(call)})
            conversation.append({"role": "user", "content": _result_turn(record)})
    return _final(model, conversation, params, records, max_rounds + 1)


def _final(
    model: Model,
    conversation: list[dict[str, Any]],
    params: SamplingParams,
    records: list[CallRecord],
    rounds: int,
) -> ToolAnswer:
    # One more turn with no tools offered and only an answer allowed, so the loop ends with
    # words (unconstrained, a small model copies the tool-call JSON it sees above).
    asked = [*conversation, {"role": "user", "content": FINAL}]
    text = _generate(
        model, asked, params.model_copy(update={"grammar": json_grammar(ANSWER_SCHEMA)})
    )
    content, _ = tc.parse(text)
    return _answered(content or "", records, rounds, conversation)


def _key(call: tc.ToolCall | CallRecord) -> str:
    return json.dumps([call.name, call.arguments], sort_keys=True)


def _answered(
    text: str, records: list[CallRecord], rounds: int, conversation: list[dict[str, Any]]
) -> ToolAnswer:
    messages = (*conversation, {"role": "assistant", "content": text})
    return ToolAnswer(text, tuple(records), rounds, messages)


def _run(
    call: tc.ToolCall,
    tools: Any,
    *,
    confirm: Callable[[tc.ToolCall], bool] | None,
    show: Callable[[tc.ToolCall], None] | None,
) -> CallRecord:
    if show is not None:
        show(call)
    name = call.name or ""
    if confirm is not None and not confirm(call):
        return CallRecord(name, call.arguments, DECLINED, ran=False)
    arguments = call.arguments if isinstance(call.arguments, dict) else {}
    return CallRecord(name, call.arguments, tools.call(name, arguments), ran=True)


def _result_turn(record: CallRecord) -> str:
    # The nudge keeps small models from copying the format's "<your answer>" placeholder.
    return f"{tc.result_text(record.result, record.name or None)}\n{NEXT}"


def _call_text(call: tc.ToolCall) -> str:
    return tc.call_text([{"function": {"name": call.name, "arguments": call.arguments}}])


def _generate(model: Model, messages: list[dict[str, Any]], params: SamplingParams) -> str:
    with model.chat(messages, params) as deltas:
        return "".join(delta.text for delta in deltas if delta.text)
