"""An evaluation run as files a person reads: a Markdown and an HTML table, a PNG plot, and
the raw per-question answers (JSONL), next to report.json, which `owl eval compare` and
`owl eval rerun` read back.

The table: a row per task and metric, a column per model, "value ± standard error"; then the
speed of each model (tokens/s) and, where a price was given, its cost per 1,000 questions.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from owl.evals.run import RunResult, write_rows

Table = tuple[list[str], list[list[str]]]  # header, rows: plain text, escaped by each writer


def table(run: RunResult) -> Table:
    """The cells of the report's one table, shared by the terminal, Markdown and HTML."""
    labels = [model.label for model in run.models]
    rows: list[list[str]] = []
    for task in run.tasks:
        for metric in task.metric_names:
            cells = [task.name, metric]
            for label in labels:
                result = run.result(task.name, label)
                cells.append(_value(result.metrics, metric) if result else "-")
            rows.append(cells)
    rows.append(["speed", "tokens/s", *(_speed(run, label) for label in labels)])
    costs = [_cost(run, label) for label in labels]
    if any(cost != "-" for cost in costs):
        rows.append(["cost", "USD / 1k questions", *costs])
    return ["task", "metric", *labels], rows


def _value(metrics: dict[str, float], metric: str) -> str:
    value = metrics.get(metric)
    if not _number(value):
        return "-"
    stderr = metrics.get(f"{metric}_stderr")
    return f"{value:.3f} ± {stderr:.3f}" if _number(stderr) else f"{value:.3f}"


def _number(value: object) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _speed(run: RunResult, label: str) -> str:
    results = [r for r in run.results if r.model == label]
    tokens = sum(r.tokens for r in results)
    seconds = sum(r.seconds for r in results)
    return f"{tokens / seconds:.1f}" if tokens and seconds > 0 else "-"


def _cost(run: RunResult, label: str) -> str:
    results = [r for r in run.results if r.model == label and r.cost_per_1k_questions is not None]
    if not results:
        return "-"
    questions = sum(r.n for r in results)
    spent = sum(r.cost_per_1k_questions * r.n for r in results)  # type: ignore[operator]
    return f"{spent / questions:.4f}" if questions else "-"


def _provenance(run: RunResult) -> list[str]:
    """Lines that say what was measured: owl, date, limit, each model's and task's digest."""
    limit = f", the first {run.limit} questions of each task" if run.limit else ""
    lines = [f"owl {run.owl_version}, {run.date}{limit}."]
    lines += [f"model {m.label}: {m.digest or 'an endpoint (no digest)'}" for m in run.models]
    lines += [f"task {t.name}: {t.digest} ({t.path})" for t in run.tasks]
    return lines


def markdown(run: RunResult) -> str:
    header, rows = table(run)

    def cell(text: str) -> str:  # a | inside a name would end the cell
        return text.replace("|", "\\|")

    lines = ["# owl eval report", ""]
    lines += ["| " + " | ".join(cell(h) for h in header) + " |"]
    lines += ["|---|---|" + "---:|" * (len(header) - 2)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    lines += ["", "![accuracy by task and model](report.png)", ""]
    lines += [f"- {cell(line)}" for line in _provenance(run)]
    return "\n".join(lines) + "\n"


def to_html(run: RunResult) -> str:
    """A page of its own (no scripts, no remote files); every name is escaped."""
    header, rows = table(run)
    esc = html.escape
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    facts = "".join(f"<li>{esc(line)}</li>" for line in _provenance(run))
    return (
        "<!doctype html>\n<html><head><meta charset='utf-8'><title>owl eval report</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:.3em .7em}td{text-align:right}"
        "td:first-child,td:nth-child(2){text-align:left}</style></head><body>"
        f"<h1>owl eval report</h1><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>"
        "</table><p><img src='report.png' alt='accuracy by task and model'></p>"
        f"<ul>{facts}</ul></body></html>\n"
    )


def plot(run: RunResult, path: Path) -> None:
    """Each task's first metric, a bar per model with its standard error."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a server
    import matplotlib.pyplot as plt
    import numpy as np

    labels = [model.label for model in run.models]
    tasks = [task for task in run.tasks if task.metric_names]
    figure, axes = plt.subplots(figsize=(max(6.0, 1.2 * len(tasks) * max(1, len(labels))), 4.5))
    width = 0.8 / max(1, len(labels))
    positions = np.arange(len(tasks))
    for number, label in enumerate(labels):
        values, errors = [], []
        for task in tasks:
            result = run.result(task.name, label)
            metrics = result.metrics if result else {}
            value = metrics.get(task.metric_names[0])
            stderr = metrics.get(f"{task.metric_names[0]}_stderr")
            values.append(value if _number(value) else 0.0)
            errors.append(stderr if _number(stderr) else 0.0)
        axes.bar(positions + number * width, values, width, yerr=errors, capsize=3, label=label)
    axes.set_xticks(positions + width * (len(labels) - 1) / 2)
    axes.set_xticklabels([f"{t.name}\n({t.metric_names[0]})" for t in tasks])
    axes.set(ylabel="score", title="Score by task")
    if all(bar.get_height() <= 1 for bar in axes.patches):  # rates: keep the whole 0–1 scale
        axes.set_ylim(0, 1.05)
    axes.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # outside: never over a bar
    figure.suptitle("owl eval: " + ", ".join(labels))
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(run: RunResult, folder: Path) -> dict[str, Path]:
    """report.json, report.md, report.html, report.png and answers.jsonl in `folder`.

    Returns the paths written: without report.png when matplotlib (owl[report]) is missing.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        name: folder / name
        for name in ("report.json", "report.md", "report.html", "report.png", "answers.jsonl")
    }
    paths["report.json"].write_text(
        json.dumps(run.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    paths["report.md"].write_text(markdown(run), encoding="utf-8")
    paths["report.html"].write_text(to_html(run), encoding="utf-8")
    write_rows(run.rows, paths["answers.jsonl"])
    try:
        plot(run, paths["report.png"])
    except ImportError:  # matplotlib is the `report` extra; the numbers are written already
        del paths["report.png"]
    return paths
