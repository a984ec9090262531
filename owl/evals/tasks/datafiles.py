"""A task's local data files: found inside the task's folder, read as lm-eval reads them.

lm-eval hands `dataset_path: json|csv` and `data_files` to Hugging Face `datasets`; owl reads
the same files itself: JSON Lines, a JSON list of rows (or a list under `field`), CSV with
a header row. As `datasets` does, every row of a split gets every column (None where a row
lacks it), and a CSV column whose every value is an integer (or a number) is read as such.
JSON columns are typed as Arrow types them (whole numbers beside a fraction become
fractions), since a template renders them. A path is taken relative to the task's YAML
file (lm-eval takes it relative to the working directory) and must stay inside the folder
the task was loaded from: a task file is untrusted and names no file outside its folder.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from owl.errors import EvalError

MAX_DATA_BYTES = 512 * 1024 * 1024
LOCAL_LOADERS = ("json", "csv")

Row = dict[str, Any]


def confined(root: Path, base: Path, name: Any, *, where: str, what: str = "data file") -> Path:
    """`name` (relative to `base`) as a path inside `root`; EvalError if outside or missing."""
    if not isinstance(name, str) or not name:
        raise EvalError(f"{where}: a {what} must be a file name, not {name!r}")
    path = (base / name).resolve()
    top = root.resolve()
    if not path.is_relative_to(top):
        raise EvalError(
            f"{where}: the {what} {name!r} is outside the task's folder {top}; "
            "put it in that folder and name it relative to the YAML file"
        )
    if not path.is_file():
        raise EvalError(f"{where}: the {what} {name!r} is not there ({path}); check the path")
    return path


def split_files(data_files: Any, *, where: str) -> dict[str, list[str]]:
    """data_files as `datasets` takes them: a name or a list (the "train" split), or a
    mapping of split to a name or a list."""
    if isinstance(data_files, str | list):
        data_files = {"train": data_files}
    if not isinstance(data_files, dict) or not data_files:
        raise EvalError(f"{where}: data_files must name the files, e.g. {{test: questions.jsonl}}")
    splits: dict[str, list[str]] = {}
    for split, names in data_files.items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise EvalError(f"{where}: data_files.{split} must be a file name or a list of them")
        splits[str(split)] = names
    return splits


def read_split(
    loader: str, paths: list[Path], *, where: str, field: str | None = None
) -> list[Row]:
    """The rows of one split, its files in order (see `unify` for their columns)."""
    rows: list[Row] = []
    for path in paths:
        if path.stat().st_size > MAX_DATA_BYTES:
            raise EvalError(f"{where}: {path.name} is over {MAX_DATA_BYTES >> 20} MiB")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise EvalError(f"{where}: cannot read {path.name}: {err}; give a UTF-8 file") from err
        try:
            file_rows = _csv_rows(text) if loader == "csv" else _json_rows(text, field)
        except (ValueError, csv.Error) as err:
            raise EvalError(f"{where}: {path.name}: {err}") from err
        for number, row in enumerate(file_rows, start=1):
            if not isinstance(row, dict):
                raise EvalError(f"{where}: row {number} of {path.name} is not an object")
        rows.extend(file_rows)
    return rows


def unify(splits: dict[str, list[Row]]) -> dict[str, list[Row]]:
    """The splits with one set of columns, typed once for all of them, as `datasets` does."""
    columns: dict[str, None] = {}
    for rows in splits.values():
        for row in rows:
            columns.update(dict.fromkeys(row))
    table = {
        name: [{c: row.get(c) for c in columns} for row in rows] for name, rows in splits.items()
    }
    every = [row for rows in table.values() for row in rows]
    for column in columns:
        _promote_numbers(every, column)
    return table


def _promote_numbers(rows: list[Row], column: str) -> None:
    # Arrow types a column once: integers beside a float become floats, so lm-eval's
    # "{{answer}}" renders 1 as "1.0" there; owl renders the same text.
    values = [row[column] for row in rows if row[column] is not None]
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    if numbers and any(isinstance(v, float) for v in values):
        for row in rows:
            if row[column] is not None:
                row[column] = float(row[column])


def _json_rows(text: str, field: str | None) -> list[Any]:
    stripped = text.lstrip()
    if stripped.startswith("[") or field is not None:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not JSON ({err.msg}, line {err.lineno})") from err
        if field is not None:
            data = data.get(field) if isinstance(data, dict) else None
        if not isinstance(data, list):
            raise ValueError(f"no list of rows{f' under {field!r}' if field else ''}")
        return data
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ValueError(f"line {number} is not JSON ({err.msg})") from err
    return rows


def _csv_rows(text: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text))
    rows = [dict(row) for row in reader]
    for column in reader.fieldnames or ():
        values = [row.get(column) for row in rows]
        for kind in (int, float):
            try:
                typed = [None if v in ("", None) else kind(v) for v in values]
            except ValueError:
                continue
            for row, value in zip(rows, typed, strict=True):
                row[column] = value
            break
        else:
            for row in rows:
                row[column] = None if row.get(column) == "" else row.get(column)
    return rows
