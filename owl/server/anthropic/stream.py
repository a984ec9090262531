"""Anthropic's message stream: server-sent events named by their type.

A streamed message is `message_start`, then each content block as `content_block_start`,
its `content_block_delta`s (text_delta for words, input_json_delta for a tool call's input)
and `content_block_stop`, then `message_delta` (stop_reason, usage) and `message_stop`; a
`ping` follows the first block's start, as Anthropic sends it. A failure once the stream
has started is an `error` event in Anthropic's error shape; the stream has no [DONE].
"""

from __future__ import annotations

import json
from typing import Any

from owl.errors import OwlError
from owl.server.anthropic.protocol import MessageBody, TextContent, ToolUseContent
from owl.server.errors import anthropic_error_body
from owl.server.framing import named_sse


def _error(message: str, err: OwlError | None) -> dict[str, Any]:
    return anthropic_error_body(message, status=500 if err is None else err.http_status)


ANTHROPIC_SSE = named_sse(_error)

PING = {"type": "ping"}
MESSAGE_STOP = {"type": "message_stop"}


def message_start(message: MessageBody) -> dict[str, Any]:
    """The message as it starts: no content yet, no stop_reason, its input tokens."""
    return {"type": "message_start", "message": message.body()}


def block_start(index: int, block: TextContent | ToolUseContent) -> dict[str, Any]:
    """A block opened empty: text "", or a tool call's id and name with input {}."""
    if isinstance(block, TextContent):
        empty: dict[str, Any] = {"type": "text", "text": ""}
    else:
        empty = {"type": "tool_use", "id": block.id, "name": block.name, "input": {}}
    return {"type": "content_block_start", "index": index, "content_block": empty}


def text_delta(index: int, text: str) -> dict[str, Any]:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "text_delta", "text": text},
    }


def input_json_delta(index: int, value: Any) -> dict[str, Any]:
    """A tool call's whole input, as the JSON text the client accumulates."""
    delta = {"type": "input_json_delta", "partial_json": json.dumps(value, ensure_ascii=False)}
    return {"type": "content_block_delta", "index": index, "delta": delta}


def block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def block_events(index: int, block: TextContent | ToolUseContent) -> list[dict[str, Any]]:
    """A whole block as its start, one delta and its stop."""
    if isinstance(block, TextContent):
        delta = text_delta(index, block.text)
    else:
        delta = input_json_delta(index, block.input)
    return [block_start(index, block), delta, block_stop(index)]


def message_delta(
    stop_reason: str, stop_sequence: str | None, *, input_tokens: int, output_tokens: int
) -> dict[str, Any]:
    """The message's end: why it stopped, and its usage (cumulative, as Anthropic's is)."""
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
    }
