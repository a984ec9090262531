"""owl.evals.report: the files `owl eval run -o DIR` writes, and what they say."""

from __future__ import annotations

import json
import math
from pathlib import Path

from owl.evals.report import markdown, table, to_html, write_report
from owl.evals.run import ModelRecord, Result, RunResult, TaskRecord, read_run

DIGEST = "sha256:" + "c" * 64
EVIL = "<script>alert('x')</script>"


def two_models(second: str = "small:q8_0", price: float | None = None) -> RunResult:
    tasks = [
        TaskRecord("arith", "/t/arith.yaml", DIGEST, "multiple_choice", ("acc", "acc_norm")),
        TaskRecord("caps", "/t/caps.yaml", DIGEST, "generate_until", ("exact_match",)),
    ]
    metrics = {
        ("arith", "big"): {"acc": 0.8, "acc_stderr": 0.1, "acc_norm": 0.7, "acc_norm_stderr": 0.11},
        ("arith", second): {
            "acc": 0.5,
            "acc_stderr": 0.125,
            "acc_norm": 0.5,
            "acc_norm_stderr": 0.12,
        },
        ("caps", "big"): {"exact_match": 1.0, "exact_match_stderr": 0.0},
        ("caps", second): {"exact_match": 0.25, "exact_match_stderr": math.nan},
    }
    cost = None if price is None else price * 40 / 4  # 40 tokens over 4 questions
    results = [
        Result(task, label, 4, values, 2.0, 40, 20.0, cost if label == second else None)
        for (task, label), values in metrics.items()
    ]
    rows = [
        {"task": task, "model": label, "index": i, "doc_id": None, "prediction": 1, "target": 1,
         "metrics": {"acc": 1.0}, "answers": [{"logprob": -1.5, "tokens": 10}], "doc": {"q": "?"}}
        for (task, label) in metrics
        for i in range(4)
    ]  # fmt: skip
    return RunResult(
        owl_version="0.1.0",
        date="2026-12-04T00:00:00+00:00",
        limit=4,
        options={"tasks": ["arith", "caps"], "models": ["big", second]},
        models=[ModelRecord("big", DIGEST), ModelRecord(second, None, price)],
        tasks=tasks,
        results=results,
        rows=rows,
    )


def test_one_table_rows_tasks_columns_models() -> None:
    header, rows = table(two_models())
    assert header == ["task", "metric", "big", "small:q8_0"]
    assert rows == [
        ["arith", "acc", "0.800 ± 0.100", "0.500 ± 0.125"],
        ["arith", "acc_norm", "0.700 ± 0.110", "0.500 ± 0.120"],
        ["caps", "exact_match", "1.000 ± 0.000", "0.250"],  # no stderr over the questions
        ["speed", "tokens/s", "20.0", "20.0"],
    ]
    priced = table(two_models(price=0.002))[1]
    assert priced[-1] == ["cost", "USD / 1k questions", "-", "0.0200"]


def test_markdown_report() -> None:
    text = markdown(two_models("a|b"))
    assert "| task | metric | big | a\\|b |" in text  # a | in a name does not split a cell
    assert "| arith | acc | 0.800 ± 0.100 | 0.500 ± 0.125 |" in text
    assert "![accuracy by task and model](report.png)" in text
    assert f"- task arith: {DIGEST} (/t/arith.yaml)" in text
    assert "- model a\\|b: an endpoint (no digest)" in text
    assert "the first 4 questions of each task" in text


def test_html_escapes_every_name() -> None:
    page = to_html(two_models(EVIL))
    assert "<script>" not in page and "alert('x')" not in page
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<td>0.800 ± 0.100</td>" in page and "<img src='report.png'" in page


def test_report_files_are_written(tmp_path: Path) -> None:
    run = two_models(EVIL, price=0.002)
    paths = write_report(run, tmp_path / "out")
    names = ["report.json", "report.md", "report.html", "report.png", "answers.jsonl"]
    assert list(paths) == names
    assert all((tmp_path / "out" / name).is_file() for name in names)
    assert (tmp_path / "out/report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<script>" not in (tmp_path / "out/report.html").read_text()
    lines = (tmp_path / "out/answers.jsonl").read_text().splitlines()
    assert len(lines) == 16 and json.loads(lines[0])["answers"] == [{"logprob": -1.5, "tokens": 10}]
    report = json.loads((tmp_path / "out/report.json").read_text())  # strict JSON: NaN is null
    assert report["results"][3]["metrics"] == {"exact_match": 0.25, "exact_match_stderr": None}
    assert {"task", "model", "n", "metrics"} <= set(report["results"][0])
    again = read_run(tmp_path / "out")
    assert again.models == run.models and again.tasks == run.tasks and again.rows[0] == run.rows[0]
    assert table(again) == table(run)
