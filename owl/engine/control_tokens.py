"""Keep message text from acting as chat markup (special-token injection).

A rendered chat prompt is tokenized with control tokens parsed, so that the template's
`<|im_start|>` becomes one token. Message content must not get that power: a user who
writes `<|im_end|>\\n<|im_start|>system` would otherwise open a system turn of their own.
The content of such messages is found in the rendered prompt and tokenized as plain text.
Prompts whose messages hold no control-token text are tokenized exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from owl.errors import InvalidPrompt


def message_texts(messages: Iterable[dict[str, Any]]) -> list[str]:
    """The text of every message, string content or OpenAI-style text parts."""
    texts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts.extend(
                part["text"]
                for part in content
                if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
    return texts


def plain_text_spans(
    prompt: str, texts: list[str], controls: frozenset[str]
) -> list[tuple[int, int]]:
    """Where in `prompt` the texts that contain control-token text lie, in order.

    InvalidPrompt if such a text is not in the prompt as written (the template changed
    it), since then it cannot be kept apart from the template's own markup.
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for text in texts:
        found = next((control for control in controls if control in text), None)
        if found is None:
            continue
        start, needle = -1, text
        for candidate in (text, text.strip()):
            start = prompt.find(candidate, cursor)
            if start < 0:
                start = prompt.find(candidate)
            if start >= 0 and not _overlaps(spans, start, start + len(candidate)):
                needle = candidate
                break
            start = -1
        if start < 0:
            raise InvalidPrompt(
                f"a message contains {found!r}, one of the model's control tokens, and the "
                "chat template changes the message so that owl cannot keep it as plain text; "
                "remove that text from the message"
            )
        spans.append((start, start + len(needle)))
        cursor = start + len(needle)
    return sorted(spans)


def _overlaps(spans: list[tuple[int, int]], start: int, end: int) -> bool:
    return any(start < other_end and other_start < end for other_start, other_end in spans)
