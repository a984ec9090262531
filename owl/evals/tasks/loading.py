"""From what a person types (`owl eval run TASK`) to tasks: a shipped name, a file, a folder."""

from __future__ import annotations

from pathlib import Path

from owl.errors import EvalError
from owl.evals.tasks.lm_eval_yaml import is_task_config, load_folder, load_yaml_tasks, read_config
from owl.evals.tasks.owl_jsonl import OwlJsonlTask, read_header
from owl.evals.tasks.task import Task

SHIPPED = Path(__file__).with_name("data")
_YAML = (".yaml", ".yml")


def shipped_task_names() -> list[str]:
    """The names of the tasks that ship with owl (small, hand-written), sorted."""
    return sorted(_shipped())


def _shipped() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(SHIPPED.iterdir()):
        if path.suffix in _YAML:
            config, _ = read_config(path, root=SHIPPED)
            if is_task_config(config):
                found[config["task"]] = path
        elif path.suffix == ".jsonl":
            header = read_header(path)
            if header is not None:
                found[str(header.get("name") or path.stem)] = path
    return found


def load_tasks(ref: str) -> list[Task]:
    """The tasks `ref` names: a shipped task's name, a task YAML (or a group YAML), an owl
    JSONL task, or a folder (every task YAML and owl JSONL task in it)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        tasks: list[Task] = [*load_folder(path)]
        tasks += [
            OwlJsonlTask(p) for p in sorted(path.rglob("*.jsonl")) if read_header(p) is not None
        ]
        if not tasks:
            raise EvalError(f"{path} holds no task YAML (with `task:`) and no owl JSONL task")
        return tasks
    if path.is_file():
        if path.suffix in _YAML:
            return [*load_yaml_tasks(path, root=path.parent)]
        if path.suffix == ".jsonl":
            return [OwlJsonlTask(path)]
        raise EvalError(f"{path}: a task is a .yaml file (lm-eval's format) or an owl .jsonl task")
    shipped = _shipped()
    if ref in shipped:
        found = shipped[ref]
        if found.suffix == ".jsonl":
            return [OwlJsonlTask(found)]
        return [*load_yaml_tasks(found, root=SHIPPED)]
    raise EvalError(
        f"no task {ref!r}: give a task YAML file, a folder of them, an owl .jsonl task, or one "
        f"of the tasks owl ships: {', '.join(sorted(shipped))}"
    )
