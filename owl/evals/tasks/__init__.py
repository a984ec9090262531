"""Evaluation tasks as data: lm-evaluation-harness YAML tasks and owl's own JSONL tasks.

A Task turns its rows into Questions of Requests (plain data an EvalModel answers, see
owl.evals.models) and scores the Answers as lm-eval does. `load_tasks` reads what a
person names; a few small hand-written tasks ship in data/.
"""

from owl.evals.tasks.loading import load_tasks, shipped_task_names
from owl.evals.tasks.request import Answer, Kind, Question, Request
from owl.evals.tasks.task import Task

__all__ = [
    "Answer",
    "Kind",
    "Question",
    "Request",
    "Task",
    "load_tasks",
    "shipped_task_names",
]
