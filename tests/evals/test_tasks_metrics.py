"""Scores on hand-made answers: acc against acc_norm, exact_match's options, filters, stderr."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from owl.errors import EvalError
from owl.evals.tasks import Answer, Task, load_tasks
from owl.evals.tasks.metrics import aggregate, build_filter, exact_match, mean_stderr


def mc_task(tmp_path: Path, rows: list[dict], metrics: str = "[acc, acc_norm]") -> Task:
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    entries = ", ".join(f"{{metric: {m}}}" for m in metrics.strip("[]").split(", "))
    (tmp_path / "t.yaml").write_text(
        "task: t\ndataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: q\ndoc_to_choice: c\n"
        f"doc_to_target: g\nmetric_list: [{entries}]\n"
    )
    (task,) = load_tasks(str(tmp_path / "t.yaml"))
    return task


def answers(*logprobs: float, greedy: int | None = None) -> list[Answer]:
    return [Answer(logprob=lp, greedy=(i == greedy)) for i, lp in enumerate(logprobs)]


def test_acc_takes_the_likeliest_choice_and_acc_norm_divides_by_its_characters(
    tmp_path: Path,
) -> None:
    # a short wrong choice against a long right one: -3 for "no" (2 chars), -8 for the
    # 10-character gold choice: acc picks "no", acc_norm (-1.5 against -0.8) the gold one
    task = mc_task(tmp_path, [{"q": "Is it?", "c": ["no", "absolutely"], "g": 1}])
    (question,) = task.questions()
    score = task.score(question, answers(-3.0, -8.0))
    assert score == {"acc": 0.0, "acc_norm": 1.0}
    assert task.prediction(question, answers(-3.0, -8.0)) == 0
    # the delimiter is not counted: -3.5 / 2 < -14 / 10, though -3.5 / 3 > -14 / 11
    assert [r.continuation for r in question.requests] == [" no", " absolutely"]
    assert task.score(question, answers(-3.5, -14.0)) == {"acc": 0.0, "acc_norm": 1.0}
    assert task.score(question, answers(-1.0, -12.0)) == {"acc": 0.0, "acc_norm": 0.0}
    assert task.score(question, answers(-9.0, -2.0)) == {"acc": 1.0, "acc_norm": 1.0}


def test_ties_go_to_the_first_choice_as_numpy_argmax(tmp_path: Path) -> None:
    task = mc_task(tmp_path, [{"q": "?", "c": ["ab", "cd"], "g": 1}])
    (question,) = task.questions()
    assert task.score(question, answers(-1.0, -1.0)) == {"acc": 0.0, "acc_norm": 0.0}


def test_exact_match_is_the_gold_choice_being_greedy_and_f1_pools(tmp_path: Path) -> None:
    rows = [
        {"q": "a", "c": ["n", "y"], "g": 1},
        {"q": "b", "c": ["n", "y"], "g": 0},
        {"q": "c", "c": ["n", "y"], "g": 1},
        {"q": "d", "c": ["n", "y"], "g": 1},
    ]
    task = mc_task(tmp_path, rows, "[acc, exact_match, f1]")
    assert task.metric_names == ("acc", "exact_match", "f1")
    qs = task.questions()
    given = [answers(-2, -1, greedy=1), answers(-2, -1, greedy=1), answers(-1, -2), answers(-3, -1)]
    scores = [task.score(q, a) for q, a in zip(qs, given, strict=True)]
    assert [s["acc"] for s in scores] == [1.0, 0.0, 0.0, 1.0]
    assert [s["exact_match"] for s in scores] == [1.0, 0.0, 0.0, 0.0]
    result = task.aggregate(scores)
    # predictions 1, 1, 0, 1 against golds 1, 0, 1, 1: tp 2, fp 1, fn 1 -> F1 = 4 / 6
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["acc"] == 0.5
    assert result["acc_stderr"] == pytest.approx(math.sqrt(1 / 3) / 2)  # ddof=1 over sqrt(n)
    assert 0 < result["f1_stderr"] < 1
    assert result == task.aggregate(scores)  # the bootstrap is seeded


def test_stderr_is_lm_evals_sample_stderr_and_absent_for_one_question() -> None:
    values = [1.0, 0.0, 1.0, 1.0, 0.0]
    mu = 0.6
    expected = math.sqrt(sum((v - mu) ** 2 for v in values) / 4) / math.sqrt(5)
    assert mean_stderr(values) == pytest.approx(expected)
    result = aggregate(("acc",), [{"acc": v} for v in values])
    assert result == {"acc": pytest.approx(0.6), "acc_stderr": pytest.approx(expected)}
    assert aggregate(("acc",), [{"acc": 1.0}]) == {"acc": 1.0}
    # a metric scored only by some questions is the mean over those (the safety probe's rates)
    mixed = [{"refusal_rate": 1.0}, {"over_refusal_rate": 0.0}, {"refusal_rate": 0.0}]
    assert aggregate(("refusal_rate", "over_refusal_rate"), mixed) == {
        "refusal_rate": 0.5,
        "refusal_rate_stderr": pytest.approx(0.5),
        "over_refusal_rate": 0.0,
    }


def test_exact_match_options_as_lm_eval_has_them() -> None:
    assert exact_match("Paris", "Paris") == 1.0
    assert exact_match("paris", "Paris") == 0.0
    assert exact_match("paris", "Paris", ignore_case=True) == 1.0
    assert exact_match("Paris!", "Paris", ignore_punctuation=True) == 1.0
    assert exact_match("1,000 m", "1000", regexes_to_ignore=[",", " m$"]) == 1.0
    assert exact_match("route 66", "route ", ignore_numbers=True) == 1.0


def test_the_regex_filter_picks_a_group_and_falls_back() -> None:
    first_number = build_filter(
        [{"function": "regex", "regex_pattern": r"(-?\d+)"}, {"function": "take_first"}],
        where="t",
    )
    assert first_number(" It is 300 cm, not 30.") == "300"
    assert first_number("no number") == "[invalid]"
    last = build_filter(
        [{"function": "regex", "regex_pattern": r"(\d+)", "group_select": -1, "fallback": "?"}],
        where="t",
    )
    assert last("1 then 2 then 3") == "3"
    assert last("none") == "?"
    # a pattern with several groups takes the first non-empty group of the match
    groups = build_filter(
        [{"function": "regex", "regex_pattern": r"answer is (\d+)|#### (\d+)"}], where="t"
    )
    assert groups("#### 42") == "42"
    cleaned = build_filter(
        [{"function": "remove_whitespace"}, {"function": "lowercase"}, {"function": "take_first"}],
        where="t",
    )
    assert cleaned("  Paris ") == "paris"
    with pytest.raises(EvalError, match="owl has no filter 'majority_vote'"):
        build_filter([{"function": "majority_vote"}], where="t")
    with pytest.raises(EvalError, match="not a regex"):
        build_filter([{"function": "regex", "regex_pattern": "("}], where="t")


def test_two_filters_key_each_metric_by_filter_name(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(json.dumps({"q": "6 × 7?", "a": "42"}) + "\n")
    (tmp_path / "g.yaml").write_text(
        "task: g\ndataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: q\ndoc_to_target: a\n"
        "generation_kwargs: {until: ['\\n'], do_sample: false}\n"
        "metric_list: [{metric: exact_match, ignore_case: true}]\n"
        "filter_list:\n"
        "  - name: strict\n    filter: [{function: regex, regex_pattern: '#### (\\d+)'}, "
        "{function: take_first}]\n"
        "  - name: flexible\n    filter: [{function: regex, regex_pattern: '(\\d+)', "
        "group_select: -1}, {function: take_first}]\n"
    )
    (task,) = load_tasks(str(tmp_path / "g.yaml"))
    assert task.metric_names == ("exact_match,strict", "exact_match,flexible")
    (question,) = task.questions()
    assert task.score(question, [Answer(text=" I think 42")]) == {
        "exact_match,strict": 0.0,
        "exact_match,flexible": 1.0,
    }
    assert task.prediction(question, [Answer(text="#### 42")]) == "42"
    result = task.aggregate([{"exact_match,strict": 1.0}, {"exact_match,strict": 0.0}])
    assert result == {"exact_match,strict": 0.5, "exact_match,strict_stderr": 0.5}


def test_the_shipped_units_task_compares_the_first_number() -> None:
    (task,) = load_tasks("units")
    question = task.questions(limit=1)[0]
    assert question.target == "300"
    assert task.score(question, [Answer(text=" 300 centimetres")]) == {"exact_match": 1.0}
    assert task.score(question, [Answer(text=" 30")]) == {"exact_match": 0.0}
    assert task.prediction(question, [Answer(text=" about 300.")]) == "300"


def test_a_metric_owl_does_not_compute_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="owl does not compute 'bleu' for multiple_choice"):
        mc_task(tmp_path, [{"q": "?", "c": ["a", "b"], "g": 0}], "[bleu]")


def test_a_missing_logprob_is_an_error_not_a_zero(tmp_path: Path) -> None:
    task = mc_task(tmp_path, [{"q": "?", "c": ["a", "b"], "g": 0}])
    (question,) = task.questions()
    with pytest.raises(EvalError, match="no log-likelihood"):
        task.score(question, [Answer(text="a"), Answer(text="b")])
