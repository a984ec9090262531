"""owl.evals.compare: paired tests on known tables, and "A beats B" only when it holds."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import pytest

from owl.errors import EvalError
from owl.evals.compare import compare, mcnemar, paired_bootstrap
from owl.evals.report import write_report
from owl.evals.run import ModelRecord, Result, RunResult, TaskRecord
from tests.support.cli import owl

DIGEST = "sha256:" + "0" * 64


def make_run(
    scores: dict[str, list[float]], *, task: str = "t", digest: str = DIGEST, metric: str = "acc"
) -> RunResult:
    """A run of one task: each model's per-question scores (question i is index i)."""
    rows = [
        {
            "task": task,
            "model": label,
            "index": i,
            "doc_id": None,
            "prediction": f"p{value}",
            "target": "p1.0",
            "metrics": {metric: value},
        }
        for label, values in scores.items()
        for i, value in enumerate(values)
    ]
    results = [
        Result(task, label, len(values), {metric: sum(values) / len(values)}, 1.0, 10, 10.0)
        for label, values in scores.items()
    ]
    return RunResult(
        owl_version="0.1.0",
        date="2026-12-04T00:00:00+00:00",
        limit=None,
        options={},
        models=[ModelRecord(label, DIGEST) for label in scores],
        tasks=[TaskRecord(task, f"/tasks/{task}.yaml", digest, "multiple_choice", (metric,))],
        results=results,
        rows=rows,
    )


@pytest.mark.parametrize(
    ("a_only", "b_only", "expected"),
    [
        (0, 0, 1.0),
        (5, 0, 2 / 2**5),  # all five discordant pairs one way: 2 · 0.5^5
        (0, 10, 2 / 2**10),
        (3, 7, 2 * (1 + 10 + 45 + 120) / 2**10),  # 2 · P(X ≤ 3), X ~ Binomial(10, 1/2): 0.34375
        (6, 6, 1.0),  # an even split: the doubled tail is above 1
        (1, 9, 2 * (1 + 10) / 2**10),  # 0.021484375
        (20, 5, 2 * sum(comb(25, k) for k in range(6)) / 2**25),  # 0.0040773
    ],
)
def test_mcnemar_exact_on_known_tables(a_only: int, b_only: int, expected: float) -> None:
    # scipy is not installed here: the values are the binomial sums written out. They are
    # scipy.stats.binomtest(min(b, c), b + c, 0.5).pvalue, which doubles the tail at p = 1/2.
    assert mcnemar(a_only, b_only) == pytest.approx(expected, rel=1e-12)
    assert mcnemar(b_only, a_only) == mcnemar(a_only, b_only)


def test_mcnemar_known_decimal_values() -> None:
    assert mcnemar(3, 7) == 0.34375
    assert mcnemar(1, 9) == 0.021484375
    assert mcnemar(20, 5) == 2 * 68406 / 2**25  # 1 + 25 + 300 + 2300 + 12650 + 53130


def test_bootstrap_is_seeded_and_reproducible() -> None:
    a = [0.9, 0.7, 0.8, 0.95, 0.6, 0.85, 0.75, 0.9, 0.8, 0.7] * 3
    b = [0.8, 0.72, 0.7, 0.9, 0.62, 0.8, 0.7, 0.85, 0.78, 0.71] * 3
    first = paired_bootstrap(a, b, seed=7)
    assert paired_bootstrap(a, b, seed=7) == first
    assert paired_bootstrap(a, b, seed=8) == pytest.approx(first, abs=0.02)
    assert first < 0.05  # A is higher on 21 of 30 questions, by 0.037 on average
    assert paired_bootstrap(a, a, seed=7) == 1.0  # no difference at all
    assert paired_bootstrap([], [], seed=7) == 1.0
    noisy = paired_bootstrap([0.5, 0.9, 0.1, 0.7], [0.6, 0.8, 0.2, 0.6], seed=1)
    assert noisy > 0.05


def test_a_beats_b_only_when_significant() -> None:
    strong = make_run({"a": [1.0] * 12 + [0.0] * 3, "b": [0.0] * 12 + [0.0] * 3})
    result = compare(strong, strong, model_a="a", model_b="b")
    [task] = result.tasks
    assert (task.test, task.a_only, task.b_only, task.n) == ("mcnemar", 12, 0, 15)
    assert task.p == mcnemar(12, 0)
    assert task.verdict == f"a beats b on t (p={mcnemar(12, 0):.3g})"
    assert [row["index"] for row in task.differing] == list(range(12))
    assert task.differing[0] == {
        "index": 0, "doc_id": None, "target": "p1.0", "prediction_a": "p1.0",
        "prediction_b": "p0.0", "a": 1.0, "b": 0.0,
    }  # fmt: skip

    reverse = compare(strong, strong, model_a="b", model_b="a").tasks[0]
    assert reverse.verdict.startswith("a beats b on t (p=")

    close = make_run({"a": [1, 1, 1, 0, 0, 1, 0, 1], "b": [1, 0, 1, 1, 0, 0, 0, 1]})
    near = compare(close, close, model_a="a", model_b="b").tasks[0]
    assert (near.a_only, near.b_only) == (2, 1)
    assert near.verdict == f"no significant difference on t (p={mcnemar(2, 1):.3g})"


def test_graded_metrics_use_the_bootstrap() -> None:
    a = [0.9, 0.7, 0.8, 0.95, 0.6, 0.85, 0.75, 0.9, 0.8, 0.7] * 3
    b = [0.8, 0.72, 0.7, 0.9, 0.62, 0.8, 0.7, 0.85, 0.78, 0.71] * 3
    run_a, run_b = make_run({"x": a}, metric="f1"), make_run({"x": b}, metric="f1")
    task = compare(run_a, run_b, seed=7).tasks[0]
    assert (task.test, task.metric, task.p) == ("bootstrap", "f1", paired_bootstrap(a, b, seed=7))
    assert task.verdict.startswith("x (A) beats x (B) on t (p=")  # the same model in two runs
    assert compare(run_a, run_b, seed=7).to_json() == compare(run_a, run_b, seed=7).to_json()


def test_choosing_models_and_what_is_missing() -> None:
    two = make_run({"a": [1.0], "b": [0.0]})
    with pytest.raises(EvalError, match=r"run A holds 2 models \(a, b\); choose one with --a"):
        compare(two, two)
    with pytest.raises(EvalError, match="run B has no model 'c'; it holds a, b"):
        compare(two, two, model_a="a", model_b="c")
    bare = make_run({"a": [1.0]})
    bare.rows = []
    with pytest.raises(EvalError, match="without its answers.jsonl"):
        compare(bare, make_run({"a": [1.0]}))
    other = compare(
        make_run({"a": [1.0, 0.0]}), make_run({"a": [1.0]}, digest="sha256:" + "1" * 64)
    )
    assert any("differs between the runs" in note for note in other.notes)
    assert any("1 questions in both runs are compared" in note for note in other.notes)
    apart = compare(make_run({"a": [1.0]}, task="t"), make_run({"a": [1.0]}, task="u"))
    assert apart.tasks == [] and apart.notes == ["task t is only in A", "task u is only in B"]


def test_compare_command(tmp_path: Path, owl_env: Path) -> None:
    write_report(make_run({"big": [1.0] * 12 + [0.0] * 3}), tmp_path / "a")
    write_report(make_run({"small": [0.0] * 15}), tmp_path / "b")
    done = owl(owl_env, "eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert done.returncode == 0, done.stderr
    assert "12 questions differ (A better on 12, B on 0; mcnemar)" in done.stdout
    assert f"big beats small on t (p={mcnemar(12, 0):.3g})" in done.stdout

    as_json = owl(
        owl_env, "eval", "compare", str(tmp_path / "a/report.json"), str(tmp_path / "b"), "--json"
    )
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout.strip().splitlines()[-1])
    assert (data["a"], data["b"]) == ("big", "small")
    assert data["tasks"][0]["p"] == mcnemar(12, 0) and len(data["tasks"][0]["differing"]) == 12


def test_compare_command_refuses_what_is_not_a_report(tmp_path: Path, owl_env: Path) -> None:
    (tmp_path / "junk.json").write_text("{nope")
    done = owl(owl_env, "eval", "compare", str(tmp_path / "junk.json"), str(tmp_path / "none"))
    assert done.returncode == 2
    assert "cannot read" in done.stderr and "junk.json" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_metric_made_only_at_the_end_is_passed_over() -> None:
    run = make_run({"a": [1.0, 1.0, 0.0], "b": [0.0, 1.0, 0.0]}, metric="exact_match")
    run.tasks = [TaskRecord("t", "/t.yaml", DIGEST, "generate_until", ("f1", "exact_match"))]
    for row in run.rows:  # f1 is summed from its parts over the questions, never per question
        row["metrics"]["f1_tp"] = 1.0
    [task] = compare(run, run, model_a="a", model_b="b").tasks
    assert (task.metric, task.a_only, task.b_only) == ("exact_match", 1, 0)
    with_f1 = compare(run, run, model_a="a", model_b="b", metric="f1")
    assert with_f1.tasks == [] and with_f1.notes == ["task t has no per-question f1 in both runs"]
