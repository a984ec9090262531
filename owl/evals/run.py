"""One evaluation run: every task's questions to every model, scored as the task says.

A question's requests (one per choice for multiple choice) always go to the model in the
same call, so that a model which scores a shared context once can do so; several questions
go together for speed. The run keeps what is needed to run it again and check the numbers
(`owl eval rerun`): owl's version, each model's digest, each task's file digest and path,
the limit, the date and the command's options.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from owl import __version__
from owl.errors import EvalError
from owl.evals.perplexity import json_safe

if TYPE_CHECKING:
    from owl.evals.models import EvalModel
    from owl.evals.tasks import Answer, Question, Request, Task

Progress = Callable[[int, int], None]  # (questions answered, questions in all, every model)

BATCH_QUESTIONS = 8  # questions per call to a model: enough to fill a batch, small for the ETA


@dataclass(frozen=True)
class ModelRecord:
    label: str
    digest: str | None
    price_per_1k_tokens: float | None = None


@dataclass(frozen=True)
class TaskRecord:
    name: str
    path: str
    digest: str
    output_type: str
    metric_names: tuple[str, ...]


@dataclass(frozen=True)
class Result:
    """One task on one model: the task's aggregate metrics, and what the answers cost."""

    task: str
    model: str
    n: int
    metrics: dict[str, float]
    seconds: float
    tokens: int
    tokens_per_s: float | None
    cost_per_1k_questions: float | None = None


@dataclass
class RunResult:
    """What `owl eval run` measured, with what it ran on; `rows` are the per-question answers."""

    owl_version: str
    date: str
    limit: int | None
    options: dict[str, Any]
    models: list[ModelRecord]
    tasks: list[TaskRecord]
    results: list[Result]
    rows: list[dict[str, Any]] = field(default_factory=list, repr=False)

    def to_json(self) -> dict[str, Any]:
        """report.json and `--json`: everything but the per-question rows (answers.jsonl)."""
        return {
            "owl_version": self.owl_version,
            "date": self.date,
            "limit": self.limit,
            "options": self.options,
            "models": [asdict(model) for model in self.models],
            "tasks": [
                {**asdict(task), "metric_names": list(task.metric_names)} for task in self.tasks
            ],
            "results": [json_safe(asdict(result)) for result in self.results],
        }

    @classmethod
    def from_json(
        cls, data: Mapping[str, Any], rows: list[dict[str, Any]] | None = None
    ) -> RunResult:
        """A run read back from report.json; EvalError when it is not one."""
        try:
            return cls(
                owl_version=str(data["owl_version"]),
                date=str(data["date"]),
                limit=data.get("limit"),
                options=dict(data.get("options") or {}),
                models=[ModelRecord(**model) for model in data["models"]],
                tasks=[
                    TaskRecord(**{**task, "metric_names": tuple(task["metric_names"])})
                    for task in data["tasks"]
                ],
                results=[Result(**result) for result in data["results"]],
                rows=rows or [],
            )
        except (KeyError, TypeError, ValueError) as err:
            raise EvalError(
                f"not an owl eval report ({type(err).__name__}: {err}); give the report.json "
                "that `owl eval run -o DIR` wrote"
            ) from err

    def result(self, task: str, model: str) -> Result | None:
        return next((r for r in self.results if r.task == task and r.model == model), None)


def evaluate(
    tasks: Sequence[Task],
    models: Sequence[EvalModel],
    *,
    limit: int | None = None,
    progress: Progress | None = None,
    options: Mapping[str, Any] | None = None,
    batch_questions: int = BATCH_QUESTIONS,
    release: bool = False,
) -> RunResult:
    """Every task on every model, in that order (model by model, task by task).

    `limit`: the first N questions of each task. `options`: the command's options, kept in the
    record for `owl eval rerun`. The caller closes the models; `release` closes each as soon
    as its tasks are done too, so that two large models are never loaded at once.
    """
    _check_unique([task.name for task in tasks], "task")
    _check_unique([model.label for model in models], "model")
    questions = {task.name: task.questions(limit) for task in tasks}
    total = sum(len(qs) for qs in questions.values()) * len(models)
    done = 0
    results: list[Result] = []
    rows: list[dict[str, Any]] = []
    if progress:
        progress(0, total)
    for model in models:
        for task in tasks:
            started = done

            def step(answered: int, start: int = started) -> None:
                if progress:
                    progress(start + answered, total)

            result, task_rows = _run_task(task, questions[task.name], model, batch_questions, step)
            done += result.n
            results.append(result)
            rows.extend(task_rows)
        if release:
            model.close()
    return RunResult(
        owl_version=__version__,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        limit=limit,
        options=dict(options or {}),
        models=[ModelRecord(m.label, m.digest, m.price_per_1k_tokens) for m in models],
        tasks=[
            TaskRecord(
                t.name, str(Path(t.path).resolve()), t.digest, t.output_type, tuple(t.metric_names)
            )
            for t in tasks
        ],
        results=results,
        rows=rows,
    )


def _run_task(
    task: Task,
    questions: list[Question],
    model: EvalModel,
    batch_questions: int,
    step: Callable[[int], None],
) -> tuple[Result, list[dict[str, Any]]]:
    scores: list[dict[str, float]] = []
    rows: list[dict[str, Any]] = []
    seconds = 0.0
    tokens = 0
    for start in range(0, len(questions), batch_questions):
        batch = questions[start : start + batch_questions]
        requests: list[Request] = [request for q in batch for request in q.requests]
        began = time.perf_counter()
        answers = model.answer(requests)
        seconds += time.perf_counter() - began
        if len(answers) != len(requests):
            raise EvalError(
                f"{model.label} gave {len(answers)} answers to {len(requests)} requests of "
                f"task {task.name}; this is a bug in the model's adapter, please report it"
            )
        offset = 0
        for question in batch:
            mine = list(answers[offset : offset + len(question.requests)])
            offset += len(question.requests)
            tokens += sum(answer.tokens for answer in mine)
            score = task.score(question, mine)
            scores.append(score)
            rows.append(_row(task, model, question, mine, score))
        step(start + len(batch))
    price = model.price_per_1k_tokens
    result = Result(
        task=task.name,
        model=model.label,
        n=len(questions),
        metrics=task.aggregate(scores) if scores else {},
        seconds=round(seconds, 6),
        tokens=tokens,
        tokens_per_s=tokens / seconds if seconds > 0 and tokens else None,
        # price per 1k tokens × tokens / 1000, spread over n questions, times 1000
        cost_per_1k_questions=price * tokens / len(questions)
        if price is not None and questions
        else None,
    )
    return result, rows


def _row(
    task: Task,
    model: EvalModel,
    question: Question,
    answers: list[Answer],
    score: dict[str, float],
) -> dict[str, Any]:
    doc = question.doc
    return {
        "task": task.name,
        "model": model.label,
        "index": question.index,
        "doc_id": doc.get("id", doc.get("doc_id")),
        "prediction": task.prediction(question, answers),
        "target": question.target,
        "metrics": score,
        "answers": [_answer(answer) for answer in answers],
        "doc": question.doc,
    }


def _answer(answer: Answer) -> dict[str, Any]:
    # Only what the model gave: a loglikelihood answer has no text, a generation no logprob.
    return {key: value for key, value in asdict(answer).items() if value is not None}


def _check_unique(names: list[str], what: str) -> None:
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise EvalError(
            f"{what} {', '.join(twice)} given twice; name each {what} once (the report has one "
            f"column per model and one row per task)"
        )


def write_rows(rows: list[dict[str, Any]], path: Path) -> None:
    """The per-question rows as JSONL, one question of one model a line."""
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(json_safe(row), ensure_ascii=False, default=str) + "\n")


def read_run(ref: Path) -> RunResult:
    """A run from its report.json or the folder holding it, with answers.jsonl if it is there."""
    path = ref / "report.json" if ref.is_dir() else ref
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise EvalError(
            f"{path} does not exist; give a report.json or the folder `owl eval run -o` wrote"
        ) from err
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise EvalError(
            f"cannot read {path}: {err}; give the report.json `owl eval run -o` wrote"
        ) from err
    if not isinstance(data, dict):
        raise EvalError(
            f"{path} is not an owl eval report; give the report.json `owl eval run -o` wrote"
        )
    answers = path.with_name("answers.jsonl")
    rows: list[dict[str, Any]] = []
    if answers.is_file():
        try:
            rows = [
                json.loads(line)
                for line in answers.read_text(encoding="utf-8").splitlines()
                if line.strip()
            ]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise EvalError(f"cannot read {answers}: {err}; run the evaluation again") from err
    return RunResult.from_json(data, rows)
