"""Two runs side by side: which questions changed, and whether the difference is real.

The test is paired, question by question: exact McNemar (a two-sided binomial test on the
questions that exactly one of the two got right) when the metric is 0/1, a seeded paired
bootstrap of the mean difference otherwise. "A beats B" is said only when p < 0.05.
`reproduction` checks a rerun against the run it repeats: same digests, same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from owl.errors import EvalError
from owl.evals.run import RunResult

ALPHA = 0.05
RESAMPLES = 10_000
TOLERANCE = 1e-9  # the same answers give the same means up to float summation order


def mcnemar(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p: P(a split at least this uneven | each side equally likely).

    `a_only`: questions A got right and B wrong; `b_only`: the other way round. Exact in
    integers (no normal approximation), so small tables are right too.
    """
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, seed: int = 0, resamples: int = RESAMPLES
) -> float:
    """Two-sided p of the mean of a - b, by resampling the questions (the same seed, the same p).

    The resampled differences, shifted to a mean of zero, stand for "no difference"; p is how
    often they are at least as far from zero as the observed one (+1 smoothing, never 0).
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.size == 0:
        return 1.0
    observed = float(diff.mean())
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, diff.size, size=(resamples, diff.size))
    means = diff[picks].mean(axis=1) - observed
    extreme = int(np.count_nonzero(np.abs(means) >= abs(observed) - 1e-12))
    return (extreme + 1) / (resamples + 1)


@dataclass(frozen=True)
class TaskComparison:
    task: str
    metric: str
    n: int
    mean_a: float
    mean_b: float
    test: str  # "mcnemar" | "bootstrap"
    p: float
    a_only: int  # questions where A scored higher
    b_only: int
    verdict: str
    differing: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    tasks: list[TaskComparison]
    notes: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "tasks": [asdict(t) for t in self.tasks],
            "notes": self.notes,
        }


def compare(
    run_a: RunResult,
    run_b: RunResult,
    *,
    model_a: str | None = None,
    model_b: str | None = None,
    metric: str | None = None,
    seed: int = 0,
) -> Comparison:
    """Each task both runs hold, question by question, for one model of each run."""
    label_a = _pick(run_a, model_a, "A")
    label_b = _pick(run_b, model_b, "B")
    name_a, name_b = (
        (label_a, label_b) if label_a != label_b else (f"{label_a} (A)", f"{label_b} (B)")
    )
    if not run_a.rows or not run_b.rows:
        raise EvalError(
            "a run without its answers.jsonl cannot be compared question by question; "
            "give the folders `owl eval run -o DIR` wrote"
        )
    tasks_b = {task.name: task for task in run_b.tasks}
    notes: list[str] = []
    compared: list[TaskComparison] = []
    for task in run_a.tasks:
        other = tasks_b.get(task.name)
        if other is None:
            notes.append(f"task {task.name} is only in A")
            continue
        if other.digest != task.digest:
            notes.append(
                f"task {task.name} differs between the runs ({task.digest[:19]} in A, "
                f"{other.digest[:19]} in B): its questions may not be the same"
            )
        rows_a = _rows(run_a, task.name, label_a)
        rows_b = _rows(run_b, task.name, label_b)
        wanted = metric or _per_question_metric(task.metric_names, rows_a)
        if wanted is None:
            notes.append(f"task {task.name} has no metric scored question by question")
            continue
        common = sorted(set(rows_a) & set(rows_b))
        if len(common) < max(len(rows_a), len(rows_b)):
            notes.append(f"task {task.name}: {len(common)} questions in both runs are compared")
        paired = [
            (index, rows_a[index], rows_b[index])
            for index in common
            if wanted in rows_a[index]["metrics"] and wanted in rows_b[index]["metrics"]
        ]
        if not paired:
            notes.append(f"task {task.name} has no per-question {wanted} in both runs")
            continue
        compared.append(_compare_task(task.name, wanted, paired, name_a, name_b, seed))
    for task in run_b.tasks:
        if task.name not in {t.name for t in run_a.tasks}:
            notes.append(f"task {task.name} is only in B")
    return Comparison(a=name_a, b=name_b, tasks=compared, notes=notes)


def _compare_task(
    task: str,
    metric: str,
    paired: list[tuple[int, dict[str, Any], dict[str, Any]]],
    name_a: str,
    name_b: str,
    seed: int,
) -> TaskComparison:
    a = [float(row_a["metrics"][metric]) for _, row_a, _ in paired]
    b = [float(row_b["metrics"][metric]) for _, _, row_b in paired]
    a_only = sum(x > y for x, y in zip(a, b, strict=True))
    b_only = sum(y > x for x, y in zip(a, b, strict=True))
    binary = all(value in (0.0, 1.0) for value in (*a, *b))
    p = mcnemar(a_only, b_only) if binary else paired_bootstrap(a, b, seed=seed)
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    if p < ALPHA and mean_a != mean_b:
        winner, loser = (name_a, name_b) if mean_a > mean_b else (name_b, name_a)
        verdict = f"{winner} beats {loser} on {task} (p={p:.3g})"
    else:
        verdict = f"no significant difference on {task} (p={p:.3g})"
    differing = [
        {
            "index": index,
            "doc_id": row_a.get("doc_id"),
            "target": row_a.get("target"),
            "prediction_a": row_a.get("prediction"),
            "prediction_b": row_b.get("prediction"),
            "a": x,
            "b": y,
        }
        for (index, row_a, row_b), x, y in zip(paired, a, b, strict=True)
        if x != y
    ]
    return TaskComparison(
        task=task,
        metric=metric,
        n=len(paired),
        mean_a=mean_a,
        mean_b=mean_b,
        test="mcnemar" if binary else "bootstrap",
        p=p,
        a_only=a_only,
        b_only=b_only,
        verdict=verdict,
        differing=differing,
    )


def _pick(run: RunResult, label: str | None, side: str) -> str:
    labels = [model.label for model in run.models]
    if label is not None:
        if label not in labels:
            raise EvalError(f"run {side} has no model {label!r}; it holds {', '.join(labels)}")
        return label
    if len(labels) != 1:
        raise EvalError(
            f"run {side} holds {len(labels)} models ({', '.join(labels)}); choose one with "
            f"--{side.lower()} LABEL"
        )
    return labels[0]


def _per_question_metric(names: Sequence[str], rows: dict[int, dict[str, Any]]) -> str | None:
    """The task's first metric that its questions score (f1 is made of parts only at the end)."""
    return next((name for name in names if any(name in r["metrics"] for r in rows.values())), None)


def _rows(run: RunResult, task: str, model: str) -> dict[int, dict[str, Any]]:
    return {row["index"]: row for row in run.rows if row["task"] == task and row["model"] == model}


@dataclass(frozen=True)
class Reproduction:
    """A rerun against the run it repeats: what changed underneath, and which numbers moved."""

    changed: list[str]  # digests that are not the recorded ones
    differences: list[dict[str, Any]]  # {"task", "model", "metric", "before", "after"}

    @property
    def matches(self) -> bool:
        return not self.differences

    def to_json(self) -> dict[str, Any]:
        return {"matches": self.matches, "changed": self.changed, "differences": self.differences}


def reproduction(before: RunResult, after: RunResult) -> Reproduction:
    """Whether `after` (a rerun) gives `before`'s numbers, and which digests changed."""
    changed: list[str] = []
    old_tasks = {task.name: task for task in before.tasks}
    for task in after.tasks:
        old = old_tasks.get(task.name)
        if old is None:
            changed.append(f"task {task.name} was not in the run")
        elif old.digest != task.digest:
            changed.append(
                f"task {task.name}'s files changed ({task.path}: {old.digest[:19]}… then, "
                f"{task.digest[:19]}… now)"
            )
    old_models = {model.label: model for model in before.models}
    for model in after.models:
        old_model = old_models.get(model.label)
        if old_model is not None and old_model.digest != model.digest:
            changed.append(
                f"model {model.label} is not the same ({old_model.digest or 'an endpoint'} then, "
                f"{model.digest or 'an endpoint'} now)"
            )
    if before.owl_version != after.owl_version:
        changed.append(f"owl {before.owl_version} then, {after.owl_version} now")
    differences: list[dict[str, Any]] = []
    for old_result in before.results:
        new_result = after.result(old_result.task, old_result.model)
        if new_result is None:
            differences.append(
                {"task": old_result.task, "model": old_result.model, "metric": None,
                 "before": None, "after": None}
            )  # fmt: skip
            continue
        for metric in sorted(set(old_result.metrics) | set(new_result.metrics)):
            old_value = old_result.metrics.get(metric)
            new_value = new_result.metrics.get(metric)
            if not _same(old_value, new_value):
                differences.append(
                    {"task": old_result.task, "model": old_result.model, "metric": metric,
                     "before": old_value, "after": new_value}
                )  # fmt: skip
    return Reproduction(changed=changed, differences=differences)


def _same(a: float | None, b: float | None) -> bool:
    # NaN is written as null (a stderr over one question): the two are the same "no number".
    if _nan(a) or _nan(b):
        return _nan(a) and _nan(b)
    return math.isclose(a, b, rel_tol=TOLERANCE, abs_tol=TOLERANCE)  # type: ignore[arg-type]


def _nan(value: float | None) -> bool:
    return value is None or math.isnan(value)
