"""owl.evals.run: every task on every model, batched by whole questions, with its record.

The task and the models here are small stand-ins written for these tests (pure Python,
deterministic), shaped as owl.evals.tasks.Task and owl.evals.models.EvalModel are, over the
real Request, Question and Answer: the run's logic is tested without loading a model;
tests/evals/test_run_cli.py runs the real ones.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from owl import __version__
from owl.errors import EvalError
from owl.evals.compare import reproduction
from owl.evals.run import RunResult, evaluate, read_run, write_rows
from owl.evals.tasks.request import Answer, Question, Request


class SumsTask:
    """Multiple choice "a + b = ?" from a JSON file; acc is 1 when the gold choice scores best."""

    output_type = "multiple_choice"
    metric_names = ("acc",)

    def __init__(self, path: Path, name: str = "sums") -> None:
        self.name = name
        self.path = path
        self.digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
        self.docs = json.loads(path.read_text())

    def questions(self, limit: int | None = None) -> list[Question]:
        docs = self.docs[:limit] if limit else self.docs
        return [
            Question(
                index=i,
                doc=doc,
                requests=tuple(
                    Request("loglikelihood", f"{doc['a']} + {doc['b']} =", f" {c}")
                    for c in doc["choices"]
                ),
                target=doc["choices"].index(doc["a"] + doc["b"]),
            )
            for i, doc in enumerate(docs)
        ]

    def prediction(self, question: Question, answers: list[Answer]) -> int:
        return max(range(len(answers)), key=lambda k: answers[k].logprob)

    def score(self, question: Question, answers: list[Answer]) -> dict[str, float]:
        return {"acc": float(self.prediction(question, answers) == question.target)}

    def aggregate(self, scores: list[dict[str, float]]) -> dict[str, float]:
        values = [s["acc"] for s in scores]
        mean = sum(values) / len(values)
        if len(values) < 2:
            return {"acc": mean, "acc_stderr": math.nan}
        var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
        return {"acc": mean, "acc_stderr": math.sqrt(var / len(values))}


@dataclass
class Adder:
    """Scores a choice by how close it is to the sum, off by `error` (0: always right)."""

    label: str
    error: int = 0
    digest: str | None = "sha256:" + "ab" * 32
    price_per_1k_tokens: float | None = None
    calls: list[list[Request]] = field(default_factory=list)
    closed: bool = False

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        self.calls.append(list(requests))
        answers = []
        for request in requests:
            a, b = (int(x) for x in request.context.rstrip(" =").split(" + "))
            guess = int(request.continuation) - self.error
            answers.append(Answer(logprob=-abs(guess - (a + b)), tokens=3))
        return answers

    def close(self) -> None:
        self.closed = True


def sums_file(tmp_path: Path, count: int = 10, name: str = "sums.json") -> Path:
    docs = [
        {"id": f"q{i}", "a": i, "b": 2 * i, "choices": [3 * i - 1, 3 * i, 3 * i + 1]}
        for i in range(count)
    ]
    path = tmp_path / name
    path.write_text(json.dumps(docs))
    return path


def test_every_task_on_every_model(tmp_path: Path) -> None:
    tasks = [SumsTask(sums_file(tmp_path)), SumsTask(sums_file(tmp_path, 4, "b.json"), "few")]
    good, off = Adder("good"), Adder("off", error=1)
    run = evaluate(tasks, [good, off], options={"tasks": ["sums", "few"]})
    by = {(r.task, r.model): r for r in run.results}
    assert set(by) == {("sums", "good"), ("few", "good"), ("sums", "off"), ("few", "off")}
    assert by["sums", "good"].metrics == {"acc": 1.0, "acc_stderr": 0.0}
    assert by["sums", "off"].metrics["acc"] == 0.0 and by["few", "good"].n == 4
    assert by["sums", "good"].tokens == 10 * 3 * 3  # 3 choices of 3 tokens a question
    assert by["sums", "good"].tokens_per_s > 0 and by["sums", "good"].cost_per_1k_questions is None
    assert len(run.rows) == (10 + 4) * 2
    row = run.rows[0]
    assert (row["task"], row["model"], row["index"], row["doc_id"]) == ("sums", "good", 0, "q0")
    assert (row["prediction"], row["target"], row["metrics"]) == (1, 1, {"acc": 1.0})
    assert row["answers"] == [
        {"logprob": -1, "tokens": 3},
        {"logprob": 0, "tokens": 3},
        {"logprob": -1, "tokens": 3},
    ]
    assert not good.closed  # the caller owns the models


def test_a_question_goes_whole_and_progress_reaches_the_total(tmp_path: Path) -> None:
    model = Adder("good")
    seen: list[tuple[int, int]] = []
    evaluate(
        [SumsTask(sums_file(tmp_path))],
        [model],
        batch_questions=4,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert [len(call) for call in model.calls] == [12, 12, 6]  # 4 + 4 + 2 questions, 3 choices each
    for call in model.calls:  # one question's choices are never split between calls
        contexts = [request.context for request in call]
        assert all(contexts.count(context) == 3 for context in contexts)
    assert seen == [(0, 10), (4, 10), (8, 10), (10, 10)]


def test_the_record_is_enough_to_run_again(tmp_path: Path) -> None:
    task = SumsTask(sums_file(tmp_path))
    options = {"tasks": [str(task.path)], "models": ["good"], "limit": 3}
    run = evaluate([task], [Adder("good")], limit=3, options=options)
    assert run.results[0].n == 3 and run.limit == 3 and run.options == options
    assert run.owl_version == __version__ and run.date[:4].isdigit()
    assert [(m.label, m.digest) for m in run.models] == [("good", "sha256:" + "ab" * 32)]
    assert [(t.name, t.path, t.digest, t.metric_names) for t in run.tasks] == [
        ("sums", str(task.path.resolve()), task.digest, ("acc",))
    ]


def test_json_has_results_with_task_model_n_metrics(tmp_path: Path) -> None:
    run = evaluate([SumsTask(sums_file(tmp_path))], [Adder("good")], limit=1)
    data = json.loads(json.dumps(run.to_json(), allow_nan=False))  # strict JSON: NaN is null
    assert data["results"][0]["task"] == "sums" and data["results"][0]["model"] == "good"
    assert data["results"][0]["n"] == 1
    assert data["results"][0]["metrics"] == {"acc": 1.0, "acc_stderr": None}
    again = RunResult.from_json(data)
    assert again.results[0].metrics["acc"] == 1.0 and again.tasks == run.tasks


def test_cost_per_1k_questions_from_the_price(tmp_path: Path) -> None:
    model = Adder("api", digest=None, price_per_1k_tokens=0.5)  # USD per 1,000 tokens
    run = evaluate([SumsTask(sums_file(tmp_path))], [model])
    # 9 tokens a question: 1,000 questions are 9,000 tokens, at 0.5 per 1,000
    assert run.results[0].cost_per_1k_questions == pytest.approx(4.5)
    assert (run.models[0].price_per_1k_tokens, run.models[0].digest) == (0.5, None)


def test_release_closes_each_model_when_its_tasks_are_done(tmp_path: Path) -> None:
    first, second = Adder("first"), Adder("second")
    closed_before_second: list[bool] = []
    original = second.answer

    def answer(requests: Sequence[Request]) -> list[Answer]:
        closed_before_second.append(first.closed)
        return original(requests)

    second.answer = answer  # type: ignore[method-assign]
    evaluate([SumsTask(sums_file(tmp_path))], [first, second], release=True)
    assert closed_before_second and all(closed_before_second) and second.closed


def test_a_label_given_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EvalError, match="model good given twice"):
        evaluate([SumsTask(sums_file(tmp_path))], [Adder("good"), Adder("good")])


def test_a_model_that_drops_answers_is_named(tmp_path: Path) -> None:
    class Short(Adder):
        def answer(self, requests: Sequence[Request]) -> list[Answer]:
            return super().answer(requests)[:-1]

    with pytest.raises(EvalError, match="short gave 23 answers to 24 requests of task sums"):
        evaluate([SumsTask(sums_file(tmp_path))], [Short("short")])


def test_read_run_back_with_its_answers(tmp_path: Path) -> None:
    run = evaluate([SumsTask(sums_file(tmp_path))], [Adder("good")])
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "report.json").write_text(json.dumps(run.to_json()))
    write_rows(run.rows, folder / "answers.jsonl")
    again = read_run(folder)
    assert again.results == run.results and len(again.rows) == 10
    assert again.rows[3]["doc"] == run.rows[3]["doc"]


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "does not exist"), ("{not json", "cannot read"), ("[1]", "not an owl eval report"),
     ('{"results": []}', "not an owl eval report")],
)  # fmt: skip
def test_an_unreadable_report_says_what_to_give(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "report.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(EvalError, match=message):
        read_run(path)


def test_rerun_matches_and_notices_a_changed_task_file(tmp_path: Path) -> None:
    path = sums_file(tmp_path)
    before = RunResult.from_json(
        json.loads(json.dumps(evaluate([SumsTask(path)], [Adder("good")]).to_json()))
    )
    same = reproduction(before, evaluate([SumsTask(path)], [Adder("good")]))
    assert same.matches and same.changed == []

    docs = json.loads(path.read_text())
    docs[0]["choices"] = [0, 1, 2]  # gold 0 is now the first choice: still right
    path.write_text(json.dumps(docs))
    changed = reproduction(before, evaluate([SumsTask(path)], [Adder("good")]))
    assert changed.matches  # the numbers are the same, but the task is not
    assert len(changed.changed) == 1 and changed.changed[0].startswith("task sums's files changed")
    assert str(path) in changed.changed[0]

    worse = reproduction(before, evaluate([SumsTask(path)], [Adder("good", error=1)]))
    assert not worse.matches
    assert [
        (d["task"], d["model"], d["metric"], d["before"], d["after"]) for d in worse.differences
    ] == [
        ("sums", "good", "acc", 1.0, 0.0)  # its stderr is 0 both times
    ]
    assert worse.to_json()["matches"] is False
