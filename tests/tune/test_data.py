"""owl.tune.data: JSONL validation (errors name the line) and loss masks (SmolLM2's tokenizer)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from owl.engine.template import ChatTemplate
from owl.errors import TrainingDataError
from owl.tune.data import IGNORE, Encoder, read_examples


@pytest.fixture(scope="module")
def tokenizer(bundled_gguf: Path):  # noqa: ANN201 (a transformers tokenizer)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(bundled_gguf.parent), gguf_file=bundled_gguf.name)


@pytest.fixture(scope="module")
def template(bundled_gguf: Path) -> ChatTemplate:
    from owl.formats import inspect

    return ChatTemplate(
        inspect(bundled_gguf).chat_template, bos_token="<|im_start|>", eos_token="<|im_end|>"
    )


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )
    return path


def learned_text(tokenizer, encoded) -> str:  # noqa: ANN001
    return tokenizer.decode([label for label in encoded.labels if label != IGNORE])


CHAT = {
    "messages": [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Green."},
    ]
}


def test_reads_the_three_shapes_and_skips_blank_lines(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "train.jsonl",
        [CHAT, "", {"prompt": "2+2=", "completion": "4"}, "   ", {"text": "hello"}],
    )
    examples = read_examples(path)
    assert [(example.line, example.kind) for example in examples] == [
        (1, "chat"),
        (3, "completion"),
        (5, "text"),
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("{not json", "line 2: not JSON"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
        ('{"question": "a", "answer": "b"}', "line 2: unknown shape (keys: answer, question)"),
        ('{"prompt": "only a prompt"}', "line 2: unknown shape"),
        ('{"text": "a", "prompt": "b", "completion": "c"}', "line 2: unknown shape"),
        ('{"text": "   "}', 'line 2: "text" is empty'),
        ('{"prompt": "a", "completion": 3}', 'line 2: "completion" must be a string, not int'),
        ('{"messages": []}', 'line 2: "messages" must be a non-empty list'),
        (
            '{"messages": [{"role": "robot", "content": "x"}]}',
            "line 2: messages[0] has role 'robot'",
        ),
        (
            '{"messages": [{"role": "user", "content": "hi"}]}',
            "line 2: the conversation has no assistant message",
        ),
        (
            '{"messages": [{"role": "user", "content": ""}, '
            '{"role": "assistant", "content": "a"}]}',
            "line 2: messages[0] is empty",
        ),
    ],
)
def test_a_bad_line_is_named_with_what_is_wrong(tmp_path: Path, line: str, expected: str) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", [{"text": "fine"}, line, {"text": "fine"}])
    with pytest.raises(TrainingDataError) as caught:
        read_examples(path)
    assert expected in str(caught.value)
    assert str(path) in str(caught.value)


def test_every_line_is_checked_before_anything_trains(tmp_path: Path) -> None:
    lines = [{"text": "ok"}] + ["{bad"] * 7 + [{"text": "ok"}, '{"text": 1}']
    path = write_jsonl(tmp_path / "train.jsonl", lines)
    with pytest.raises(TrainingDataError) as caught:
        read_examples(path)
    message = str(caught.value)
    assert "line 2:" in message and "line 6:" in message
    assert "(and 3 more)" in message  # lines 7, 8 and 10 are counted, not listed


def test_binary_and_empty_files_are_refused(tmp_path: Path) -> None:
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b'{"text": "ok"}\n\xff\xfe\x00garbage\n')
    with pytest.raises(TrainingDataError, match="line 2: not UTF-8"):
        read_examples(binary)
    empty = write_jsonl(tmp_path / "empty.jsonl", ["", ""])
    with pytest.raises(TrainingDataError, match="has no examples"):
        read_examples(empty)
    with pytest.raises(TrainingDataError, match="cannot read"):
        read_examples(tmp_path / "missing.jsonl")


def test_chat_loss_is_on_assistant_turns_only(tmp_path: Path, tokenizer, template) -> None:  # noqa: ANN001
    [example] = read_examples(write_jsonl(tmp_path / "chat.jsonl", [CHAT]))
    encoded, cut = Encoder(tokenizer, template, max_len=512).encode(example)
    assert not cut
    assert len(encoded.input_ids) == len(encoded.labels)
    # The whole conversation, as the model's own template renders it, is the input.
    full = template.render(list(example.messages), add_generation_prompt=False)
    assert tokenizer.decode(encoded.input_ids) == full
    # Learned: each assistant's content and its end-of-turn, nothing of the user or system.
    assert learned_text(tokenizer, encoded) == "Blue.<|im_end|>\nGreen.<|im_end|>\n"
    masked = tokenizer.decode(
        [
            token
            for token, label in zip(encoded.input_ids, encoded.labels, strict=True)
            if label == IGNORE
        ]
    )
    assert "Name a colour." in masked and "Another?" in masked and "SmolLM" in masked
    assert "Blue" not in masked and "Green" not in masked
    # Labels equal the inputs where they are learned (the model shifts them itself).
    assert all(
        label in (IGNORE, token)
        for token, label in zip(encoded.input_ids, encoded.labels, strict=True)
    )


def test_completion_loss_is_on_the_completion_and_the_stop(
    tmp_path: Path, tokenizer, template
) -> None:  # noqa: ANN001, E501
    lines = [{"prompt": "Capital of France:", "completion": " Paris"}, {"text": "All of me."}]
    completion, text = read_examples(write_jsonl(tmp_path / "pc.jsonl", lines))
    encoder = Encoder(tokenizer, template, max_len=512)
    encoded, _ = encoder.encode(completion)
    assert learned_text(tokenizer, encoded) == " Paris<|im_end|>"
    assert tokenizer.decode(encoded.input_ids) == "Capital of France: Paris<|im_end|>"
    encoded, _ = encoder.encode(text)
    assert IGNORE not in encoded.labels
    assert learned_text(tokenizer, encoded) == "All of me.<|im_end|>"


def test_too_long_is_cut_with_a_warning_or_refused_when_nothing_is_left(
    tmp_path: Path,
    tokenizer,  # noqa: ANN001
    template: ChatTemplate,
    caplog: pytest.LogCaptureFixture,
) -> None:
    long_text = " ".join(["word"] * 100)
    path = write_jsonl(
        tmp_path / "long.jsonl",
        [{"text": long_text}, {"prompt": "short", "completion": "fine"}],
    )
    encoder = Encoder(tokenizer, template, max_len=16)
    with caplog.at_level(logging.WARNING):
        items = encoder.encode_all(read_examples(path), path=path)
    assert len(items[0].input_ids) == 16
    assert "1 example(s) longer than --max-len 16 tokens were cut (lines 1)" in caplog.text
    refused = write_jsonl(
        tmp_path / "refused.jsonl",
        [{"text": "ok"}, {"prompt": long_text, "completion": "the answer"}],
    )
    with pytest.raises(TrainingDataError, match="line 2: nothing to learn within --max-len 16"):
        encoder.encode_all(read_examples(refused), path=refused)


def test_a_template_that_rewrites_earlier_turns_is_refused(tmp_path: Path, tokenizer) -> None:  # noqa: ANN001
    # Renders only the last message: no rendering is a prefix of the next.
    template = ChatTemplate("{{ messages[-1]['content'] if messages else '' }}")
    path = write_jsonl(tmp_path / "chat.jsonl", [CHAT])
    with pytest.raises(TrainingDataError, match="line 1: the base model's chat template"):
        Encoder(tokenizer, template, max_len=64).encode_all(read_examples(path), path=path)
