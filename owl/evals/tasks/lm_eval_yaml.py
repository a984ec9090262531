"""lm-evaluation-harness task YAML files: read safely, includes merged, groups resolved.

lm-eval loads a task file with a YAML loader that turns `!function utils.process` into
Python imported from the task's folder; owl reads task files with the safe loader and
refuses `!function` by name, since a task file is data and runs no code here. `include:`
(a file or a list, relative to the including file) is merged as lm-eval merges it: the
included keys first, the file's own keys over them. A folder is every task YAML in it
(recursively, in path order); a group file (`group:` with a `task:` list) is the tasks it
names — by task name or by `tag` — among the YAML files of its folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from owl.errors import EvalError
from owl.evals.tasks.datafiles import confined
from owl.evals.tasks.lm_eval_task import LmEvalTask

MAX_YAML_BYTES = 1024 * 1024
MAX_INCLUDE_DEPTH = 16
_IGNORED_DIRS = {"__pycache__", ".ipynb_checkpoints"}


class _FunctionTag(Exception):
    def __init__(self, name: str) -> None:
        self.name = name


class _TaskLoader(yaml.SafeLoader):
    """The safe loader, and `!function` refused (with its name, for the message)."""


def _refuse_function(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    raise _FunctionTag(str(loader.construct_scalar(node)))  # type: ignore[arg-type]


_TaskLoader.add_constructor("!function", _refuse_function)


def read_config(path: Path, *, root: Path) -> tuple[dict[str, Any], list[Path]]:
    """The file's config with its includes merged, and every file read (the file first)."""
    return _read(path, root=root, seen=())


def _read(path: Path, *, root: Path, seen: tuple[Path, ...]) -> tuple[dict[str, Any], list[Path]]:
    path = path.resolve()
    if path in seen:
        raise EvalError(f"{seen[-1].name} includes {path.name}, which includes it back")
    if len(seen) > MAX_INCLUDE_DEPTH:
        raise EvalError(f"{path.name}: includes nest more than {MAX_INCLUDE_DEPTH} deep")
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise EvalError(
                f"{path}: a task file over {MAX_YAML_BYTES >> 10} KiB is not a task file"
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise EvalError(f"cannot read the task file {path}: {err}") from err
    try:
        config = yaml.load(text, Loader=_TaskLoader)  # noqa: S506 - a SafeLoader subclass
    except _FunctionTag as tag:
        raise EvalError(
            f"{path.name}: `!function {tag.name}` asks to run Python code from the task's "
            "folder; owl runs no code from a task file. Write the field as a Jinja template "
            '(doc_to_text: "Question: {{question}}\\nAnswer:") or prepare the data file so '
            "that it needs none"
        ) from None
    except yaml.YAMLError as err:
        raise EvalError(f"{path.name} is not a YAML task file: {err}") from err
    if not isinstance(config, dict):
        raise EvalError(f"{path.name}: a task file is a YAML mapping (task:, dataset_path:, …)")
    files = [path]
    includes = config.pop("include", None)
    if includes is None:
        return config, files
    merged: dict[str, Any] = {}
    for name in includes if isinstance(includes, list) else [includes]:
        included = confined(root, path.parent, name, where=path.name, what="included file")
        sub, sub_files = _read(included, root=root, seen=(*seen, path))
        sub.pop("task_list", None)
        merged.update(sub)
        files.extend(sub_files)
    merged.update(config)
    return merged, files


def yaml_files(folder: Path) -> list[Path]:
    """Every .yaml/.yml file under `folder`, in path order (lm-eval's order)."""
    found = [
        p
        for pattern in ("**/*.yaml", "**/*.yml")
        for p in folder.glob(pattern)
        if p.is_file() and not _IGNORED_DIRS.intersection(p.relative_to(folder).parts)
    ]
    return sorted(found, key=lambda p: p.as_posix())


def is_task_config(config: dict[str, Any]) -> bool:
    return isinstance(config.get("task"), str) and "group" not in config


def load_yaml_tasks(path: Path, *, root: Path) -> list[LmEvalTask]:
    """The task a task file defines, or the tasks a group file names."""
    config, files = read_config(path, root=root)
    if "class" in config:
        raise EvalError(f"{path.name}: `class:` is a Python task; owl runs tasks as data only")
    if is_task_config(config):
        return [LmEvalTask(config, path=path, root=root, files=files)]
    if "group" in config or isinstance(config.get("task"), list):
        return _group(config, path=path, root=root, files=files)
    raise EvalError(f"{path.name} is not a task file: it has no `task:` name (nor `group:`)")


def load_folder(folder: Path) -> list[LmEvalTask]:
    """Every task YAML in the folder; files that are only included (no task:) are skipped."""
    tasks = []
    for path in yaml_files(folder):
        config, files = read_config(path, root=folder)
        if is_task_config(config):
            tasks.append(LmEvalTask(config, path=path, root=folder, files=files))
    return tasks


def _group(
    config: dict[str, Any], *, path: Path, root: Path, files: list[Path]
) -> list[LmEvalTask]:
    entries = config.get("task")
    name = config.get("group", path.stem)
    if not isinstance(entries, list) or not entries:
        raise EvalError(f"{path.name}: group {name!r} needs `task:`, a list of task names")
    index: dict[str, tuple[dict[str, Any], list[Path], Path]] = {}
    tags: dict[str, list[str]] = {}
    for other in yaml_files(path.parent):
        if other.resolve() == path.resolve():
            continue
        sub, sub_files = read_config(other, root=root)
        if is_task_config(sub):
            index.setdefault(sub["task"], (sub, sub_files, other))
            tag = sub.get("tag")
            for t in tag if isinstance(tag, list) else [tag] if tag else []:
                tags.setdefault(str(t), []).append(sub["task"])
    tasks: list[LmEvalTask] = []
    for entry in entries:
        if isinstance(entry, str):
            names = [entry] if entry in index else tags.get(entry)
            if not names:
                raise EvalError(
                    f"{path.name}: group {name!r} names {entry!r}, which no task file in "
                    f"{path.parent} defines (by task: or tag:)"
                )
            for task_name in names:
                sub, sub_files, other = index[task_name]
                tasks.append(LmEvalTask(sub, path=other, root=root, files=sub_files))
        elif isinstance(entry, dict) and isinstance(entry.get("task"), str):
            base = index.get(entry["task"])
            if base is None:  # a task written inside the group file
                tasks.append(LmEvalTask(entry, path=path, root=root, files=files))
            else:
                sub, sub_files, other = base
                merged = {**sub, **entry}
                tasks.append(LmEvalTask(merged, path=other, root=root, files=[*sub_files, path]))
        else:
            raise EvalError(f"{path.name}: group {name!r}: each task entry is a name or a mapping")
    return tasks
