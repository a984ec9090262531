"""The one interface every kind of task offers the runner (lm-eval YAML, owl JSONL)."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from owl.evals.tasks.metrics import aggregate
from owl.evals.tasks.request import Answer, Question


class Task(ABC):
    """A named set of questions, and how to score a model's answers to them.

    `score` gives each question's values; most are the question's value of a metric in
    `metric_names` (acc 0 or 1), but a metric that is not a mean over questions (f1,
    perplexity) is given as its parts (`f1_tp`, `loglikelihood`, …) and only `aggregate`
    makes the metric of them. A question scores only the metrics that apply to it (the
    safety probe's harmful questions give refusal_rate, its benign ones over_refusal_rate).
    """

    name: str
    path: Path
    digest: str  # sha256 over the task file and every file it reads
    output_type: str
    metric_names: tuple[str, ...]

    @abstractmethod
    def questions(self, limit: int | None = None) -> list[Question]:
        """The first `limit` questions of the evaluation split (all when None), in order."""

    @abstractmethod
    def score(self, question: Question, answers: list[Answer]) -> dict[str, float]:
        """The question's values, from the answers to its requests (in their order)."""

    @abstractmethod
    def prediction(self, question: Question, answers: list[Answer]) -> Any:
        """What the model chose or said, for the per-question record and comparisons."""

    def aggregate(self, scores: list[dict[str, float]]) -> dict[str, float]:
        """Each metric over the questions, with its standard error as lm-eval reports it."""
        return aggregate(self.metric_names, scores)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.output_type}, {self.path})"


def files_digest(files: Iterable[Path], *, root: Path) -> str:
    """sha256 over each file's name (relative to `root`) and bytes, in the order given."""
    total = hashlib.sha256()
    for file in files:
        try:
            name = file.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            name = file.name
        total.update(name.encode() + b"\0")
        total.update(hashlib.sha256(file.read_bytes()).digest())
    return "sha256:" + total.hexdigest()
