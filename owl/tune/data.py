"""Training data: JSONL examples, validated line by line, tokenized with loss masks.

Three shapes, one per line (blank lines are skipped):

    {"messages": [{"role": "user", "content": "…"}, {"role": "assistant", "content": "…"}]}
    {"prompt": "…", "completion": "…"}
    {"text": "…"}

A chat is rendered with the base model's own chat template (owl's sandboxed ChatTemplate)
and the loss falls on the assistant turns only; a prompt/completion on the completion
only; a text on all of it. The whole file is read and checked before any training starts,
and the errors name their line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from owl.engine.template import ChatTemplate
from owl.errors import TrainingDataError

log = logging.getLogger(__name__)

IGNORE = -100  # the label that torch's cross-entropy skips
ROLES = ("system", "user", "assistant")
MAX_LINE_BYTES = 1 << 20  # one example; a longer line is not a training example
MAX_ERRORS_SHOWN = 5


@dataclass(frozen=True)
class Example:
    """One validated line: `kind` is "chat", "completion" or "text"."""

    line: int
    kind: str
    messages: tuple[dict[str, str], ...] = ()
    prompt: str = ""
    completion: str = ""
    text: str = ""


@dataclass(frozen=True)
class Encoded:
    """Token ids and their labels (IGNORE where no loss is taken)."""

    line: int
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE for label in self.labels)


class Tokenizer(Protocol):
    """What owl needs of a Hugging Face tokenizer."""

    bos_token_id: int | None
    eos_token_id: int | None

    def encode(self, text: str, add_special_tokens: bool = ...) -> list[int]: ...


def _check_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, not {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value


def _parse_messages(value: Any) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise ValueError('"messages" must be a non-empty list of {"role", "content"} objects')
    messages = []
    for index, message in enumerate(value):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise ValueError(f"{where} must be an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"{where} has role {role!r}; use one of {', '.join(ROLES)}")
        messages.append({"role": role, "content": _check_text(message.get("content"), where)})
    if not any(message["role"] == "assistant" for message in messages):
        raise ValueError("the conversation has no assistant message, so nothing to learn")
    return tuple(messages)


def parse_example(raw: str, line: int) -> Example:
    """One JSONL line → an Example; ValueError saying what is wrong with it."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    shapes = [key for key in ("messages", "prompt", "text") if key in value]
    if len(shapes) != 1 or ("prompt" in value) != ("completion" in value):
        raise ValueError(
            f"unknown shape (keys: {', '.join(sorted(value)) or 'none'}); each line needs "
            'exactly one of {"messages": [...]}, {"prompt", "completion"} or {"text"}'
        )
    if "messages" in value:
        return Example(line, "chat", messages=_parse_messages(value["messages"]))
    if "prompt" in value:
        return Example(
            line,
            "completion",
            prompt=_check_text(value["prompt"], '"prompt"'),
            completion=_check_text(value["completion"], '"completion"'),
        )
    return Example(line, "text", text=_check_text(value["text"], '"text"'))


def read_examples(path: Path) -> list[Example]:
    """Every example in the JSONL file `path`; TrainingDataError naming the bad lines."""
    try:
        handle = path.open("rb")
    except OSError as err:
        raise TrainingDataError(f"cannot read {path}: {err.strerror or err}") from err
    examples: list[Example] = []
    errors: list[str] = []
    with handle:
        for number, raw in enumerate(_lines(handle), start=1):
            if isinstance(raw, str) and not raw.strip():
                continue
            try:
                if not isinstance(raw, str):
                    raise ValueError(raw[1])
                examples.append(parse_example(raw, number))
            except ValueError as err:
                errors.append(f"line {number}: {err}")
    if errors:
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
        more = (
            f" (and {len(errors) - MAX_ERRORS_SHOWN} more)"
            if len(errors) > MAX_ERRORS_SHOWN
            else ""
        )
        raise TrainingDataError(f"{path}: {shown}{more}. Fix these lines and run again")
    if not examples:
        raise TrainingDataError(
            f"{path} has no examples; write one JSON object a line, e.g. "
            '{"prompt": "…", "completion": "…"}'
        )
    return examples


def _lines(handle: Any) -> Iterable[str | tuple[None, str]]:
    """Decoded lines; (None, why) for a line that is too long or not UTF-8."""
    while True:
        raw = handle.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            while raw and not raw.endswith(b"\n"):  # skip the rest of the line
                raw = handle.readline(MAX_LINE_BYTES)
            yield (None, f"longer than {MAX_LINE_BYTES} bytes")
            continue
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            yield (None, "not UTF-8 text")


class Encoder:
    """Examples → token ids with loss masks, for one base model's tokenizer and template.

    Text is tokenized in pieces at the boundaries of what is learned (a chat's prompt up to
    the assistant's turn, then the turn): the same split the model sees when it generates,
    where the prompt is tokenized and the answer comes token by token.
    """

    def __init__(self, tokenizer: Tokenizer, template: ChatTemplate, *, max_len: int) -> None:
        self.tokenizer = tokenizer
        self.template = template
        self.max_len = max_len
        probe = tokenizer.encode("a", add_special_tokens=True)
        bos = tokenizer.bos_token_id
        self._bos = [bos] if bos is not None and probe[:1] == [bos] else []
        eos = tokenizer.eos_token_id
        self._eos = [eos] if eos is not None else []

    def pieces(self, example: Example) -> list[tuple[str, bool]]:
        """The example's text as (piece, learned) pairs, in order."""
        if example.kind == "text":
            return [(example.text, True)]
        if example.kind == "completion":
            return [(example.prompt, False), (example.completion, True)]
        pieces: list[tuple[str, bool]] = []
        done = ""
        messages = list(example.messages)
        for index, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            prompt = self.template.render(messages[:index], add_generation_prompt=True)
            turn = self.template.render(messages[: index + 1], add_generation_prompt=False)
            if not prompt.startswith(done) or not turn.startswith(prompt):
                raise ValueError(
                    "the base model's chat template does not render a conversation as its "
                    "prefixes (so the assistant's turns cannot be found); use "
                    '{"prompt", "completion"} lines instead'
                )
            pieces += [(prompt[len(done) :], False), (turn[len(prompt) :], True)]
            done = turn
        return [(text, learned) for text, learned in pieces if text]

    def encode(self, example: Example) -> tuple[Encoded, bool]:
        """The example's tokens and labels, and whether it was cut to max_len."""
        input_ids: list[int] = []
        labels: list[int] = []
        if example.kind != "chat":  # a chat template writes its own BOS text when it wants one
            input_ids += self._bos
            labels += [IGNORE] * len(self._bos)
        for text, learned in self.pieces(example):
            ids = self.tokenizer.encode(text, add_special_tokens=False)
            input_ids += ids
            labels += ids if learned else [IGNORE] * len(ids)
        if example.kind != "chat":  # learn to stop where the text ends
            input_ids += self._eos
            labels += self._eos
        cut = len(input_ids) > self.max_len
        encoded = Encoded(example.line, input_ids[: self.max_len], labels[: self.max_len])
        return encoded, cut

    def encode_all(self, examples: list[Example], *, path: Path) -> list[Encoded]:
        """Every example encoded; TrainingDataError for those with nothing left to learn.

        Examples longer than max_len are cut there, with one warning naming them.
        """
        encoded: list[Encoded] = []
        cut_lines: list[int] = []
        errors: list[str] = []
        for example in examples:
            try:
                item, cut = self.encode(example)
            except ValueError as err:
                errors.append(f"line {example.line}: {err}")
                continue
            if item.trained_tokens == 0:
                errors.append(
                    f"line {example.line}: nothing to learn within --max-len {self.max_len} "
                    "tokens (the learned part starts after the cut)"
                )
            if cut:
                cut_lines.append(example.line)
            encoded.append(item)
        if errors:
            shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
            raise TrainingDataError(f"{path}: {shown}. Shorten these examples or raise --max-len")
        if cut_lines:
            listed = ", ".join(map(str, cut_lines[:10])) + ("…" if len(cut_lines) > 10 else "")
            log.warning(
                "%s: %d example(s) longer than --max-len %d tokens were cut (lines %s)",
                path,
                len(cut_lines),
                self.max_len,
                listed,
            )
        return encoded
