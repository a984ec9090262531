"""The extraction task: its data files, the exact-match scorer, and a real run through llama.cpp."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from owl.errors import EvalError
from owl.evals.extraction import (
    extraction,
    parse_answer,
    read_examples,
    same_value,
    score_answer,
    score_answers,
)
from tests.support.cli import owl

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "extraction"
EXPECTED = {"name": "Paula Tanaka", "date": "2026-01-03", "city": "Nantes", "amount": 248}


def test_the_committed_splits_are_what_the_script_makes(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_extraction_data.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
    )
    for name in ("train.jsonl", "eval.jsonl", "prompts.txt"):
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_the_splits_share_no_text_and_every_answer_has_the_fixed_shape() -> None:
    train = read_examples(DATA / "train.jsonl")
    evals = read_examples(DATA / "eval.jsonl")
    assert (len(train), len(evals)) == (400, 100)
    train_texts = {example.messages[-1]["content"] for example in train}
    assert not train_texts & {example.messages[-1]["content"] for example in evals}
    for example in train + evals:
        assert list(example.expected) == ["name", "date", "city", "amount"]
        assert example.expected["name"] in example.messages[-1]["content"]
        assert example.expected["city"] in example.messages[-1]["content"]


@pytest.mark.parametrize(
    ("answer", "valid", "exact"),
    [
        (json.dumps(EXPECTED), True, True),
        # Key order, spacing, a code fence and 248.0 for 248 do not matter.
        (
            '{"amount": 248.0, "city": "Nantes", "date": "2026-01-03", "name": "Paula Tanaka"}',
            True,
            True,
        ),
        (
            '```json\n{"name": "Paula Tanaka", "date": "2026-01-03", "city": "Nantes", '
            '"amount": 248}\n```',
            True,
            True,
        ),
        # Valid JSON, wrong content: a field off, a string amount, a key missing or extra.
        (
            '{"name": "Paula Tanaka", "date": "3 January 2026", "city": "Nantes", "amount": 248}',
            True,
            False,
        ),
        (
            '{"name": "Paula Tanaka", "date": "2026-01-03", "city": "Nantes", "amount": "248"}',
            True,
            False,
        ),
        ('{"name": "Paula Tanaka", "date": "2026-01-03", "city": "Nantes"}', True, False),
        (
            '{"name": "Paula Tanaka", "date": "2026-01-03", "city": "Nantes", "amount": 248, '
            '"x": 1}',
            True,
            False,
        ),
        ("null", True, False),
        ("[]", True, False),
        # Not JSON: prose around it, a truncated object, nothing.
        (
            'Sure! {"name": "Paula Tanaka", "date": "2026-01-03", "city": "Nantes", "amount": 248}',
            False,
            False,
        ),
        ('{"name": "Paula Tanaka", "date": "2026-01-03", "city": "Nan', False, False),
        ("", False, False),
    ],
)
def test_score_answer(answer: str, valid: bool, exact: bool) -> None:
    assert score_answer(answer, EXPECTED) == (valid, exact)


def test_booleans_are_not_numbers() -> None:
    assert not same_value(True, 1)
    assert not same_value(1, True)
    assert same_value(False, False)
    assert same_value([1, {"a": 2.0}], [1.0, {"a": 2}])
    assert parse_answer('  {"a": 1}\n') == {"a": 1}


def test_score_answers_counts_over_eval_lines() -> None:
    examples = read_examples(DATA / "eval.jsonl", limit=4)
    right = [json.dumps(example.expected) for example in examples]
    answers = [right[0], right[1].replace('"', "'"), "{}", right[3]]
    assert score_answers(answers, examples) == (3, 2)  # (valid, exact)


def test_read_examples_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    good = (DATA / "eval.jsonl").read_text().splitlines()[0]
    path.write_text(good + "\n\n" + '{"messages": [{"role": "user", "content": "x"}]}\n')
    with pytest.raises(EvalError, match="eval.jsonl line 3"):
        read_examples(path)
    path.write_text("not json\n")
    with pytest.raises(EvalError, match="line 1 is not JSON"):
        read_examples(path)
    path.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": "not json"},
                ]
            }
        )
        + "\n"
    )
    with pytest.raises(EvalError, match="not JSON"):
        read_examples(path)


@pytest.mark.slow
def test_a_real_run_through_llama_cpp(store, settings, monkeypatch) -> None:
    monkeypatch.setenv("OWL_THREADS", "1")
    settings = settings.model_copy(update={"threads": 1})
    result = extraction(
        "smollm2", data=DATA / "eval.jsonl", limit=3, store=store, settings=settings
    )
    assert (result.model, result.examples, len(result.answers)) == ("smollm2", 3, 3)
    assert all(answer.strip() for answer in result.answers)
    examples = read_examples(DATA / "eval.jsonl", limit=3)
    assert (result.valid, result.exact) == score_answers(result.answers, examples)
    again = extraction("smollm2", data=DATA / "eval.jsonl", limit=3, store=store, settings=settings)
    assert again.answers == result.answers  # greedy: the same answers every time


@pytest.mark.slow
def test_the_cli_prints_one_json_line(tmp_path: Path) -> None:
    done = owl(
        tmp_path / "home",
        "eval",
        "extraction",
        "smollm2",
        "--data",
        str(DATA / "eval.jsonl"),
        "--limit",
        "2",
        "--json",
        "--threads",
        "1",
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout.strip().splitlines()[-1])
    assert payload["examples"] == 2 and payload["model"] == "smollm2"
    assert 0 <= payload["exact_match"] <= payload["json_valid"] <= 1


def test_an_adapter_that_is_not_one_is_a_clear_error(store, settings) -> None:
    from owl.errors import AdapterMismatch, ModelNotFound

    with pytest.raises(ModelNotFound):
        extraction(
            "smollm2",
            data=DATA / "eval.jsonl",
            limit=1,
            adapters=["no-such"],
            store=store,
            settings=settings,
        )
    # The base itself is a model, not a LoRA adapter: refused before llama.cpp sees it.
    with pytest.raises(AdapterMismatch, match="not a LoRA adapter"):
        extraction(
            "smollm2+smollm2", data=DATA / "eval.jsonl", limit=1, store=store, settings=settings
        )
