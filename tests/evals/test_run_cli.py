"""`owl eval run | rerun` as a user runs them: a real process, the real tasks and models."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.cli import owl
from tests.support.owl_server import running_server


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    said = " ".join(done.stderr.replace("│", " ").split())  # click's box wraps long lines
    for word in words:
        assert word in said, done.stderr


@pytest.mark.slow
def test_run_arithmetic_on_smollm2(owl_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["eval", "run", "arithmetic", "--model", "smollm2", "--limit", "5"]
    done = owl(owl_env, *args, "--json", "-o", str(out), "--threads", "2", timeout=600)
    assert done.returncode == 0, done.stderr
    data = last_json(done.stdout)
    [result] = data["results"]
    assert (result["task"], result["model"], result["n"]) == ("arithmetic", "smollm2", 5)
    assert 0 <= result["metrics"]["acc"] <= 1 and "acc_stderr" in result["metrics"]
    assert result["tokens_per_s"] > 0
    assert data["models"][0]["digest"].startswith("sha256:")
    assert data["tasks"][0]["digest"].startswith("sha256:") and data["limit"] == 5
    for name in ("report.json", "report.md", "report.html", "report.png", "answers.jsonl"):
        assert (out / name).is_file(), name
    assert len((out / "answers.jsonl").read_text().splitlines()) == 5

    again = owl(owl_env, "eval", "rerun", str(out / "report.json"), timeout=600)
    assert again.returncode == 0, again.stderr
    assert "the numbers match the recorded run" in again.stdout
    assert "arithmetic" in again.stdout and "smollm2" in again.stdout  # the table


def test_an_unknown_task_is_a_usage_error(owl_env: Path) -> None:
    done = owl(owl_env, "eval", "run", "no-such-task", "--model", "smollm2")
    one_line_error(done, "no-such-task")


def test_an_unknown_model_is_a_usage_error(owl_env: Path) -> None:
    done = owl(owl_env, "eval", "run", "arithmetic", "--model", "no-such-model-anywhere")
    one_line_error(done, "no-such-model-anywhere")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        ([], ("--model NAME",)),
        (["--model", "smollm2", "--price", "1"], ("--endpoint URL",)),
        (["--endpoint", "http://127.0.0.1:9/v1"], ("--endpoint-model",)),
        (
            [
                "--endpoint",
                "http://127.0.0.1:9/v1",
                "--endpoint-model",
                "m",
                "--api-key-env",
                "OWL_TEST_UNSET_KEY",
            ],
            ("OWL_TEST_UNSET_KEY is not set",),
        ),
    ],
)
def test_options_that_do_not_go_together(
    owl_env: Path, args: list[str], words: tuple[str, ...]
) -> None:
    os.environ.pop("OWL_TEST_UNSET_KEY", None)
    one_line_error(owl(owl_env, "eval", "run", "arithmetic", *args), *words)


def test_rerun_of_what_is_not_a_report(owl_env: Path, tmp_path: Path) -> None:
    one_line_error(owl(owl_env, "eval", "rerun", str(tmp_path / "missing.json")), "does not exist")
    (tmp_path / "old.json").write_text(
        json.dumps({"owl_version": "0", "date": "", "models": [], "tasks": [], "results": []})
    )
    one_line_error(owl(owl_env, "eval", "rerun", str(tmp_path / "old.json")), "cannot be rerun")


TINY_TASK = """\
task: tiny_sums
dataset_path: json
dataset_kwargs:
  data_files:
    test: sums.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "Question: What is {{a}} + {{b}}?\\nAnswer:"
doc_to_choice: "{{choices}}"
doc_to_target: gold
metric_list:
  - metric: acc
"""


@pytest.mark.slow
def test_rerun_says_which_task_file_changed(owl_env: Path, tmp_path: Path) -> None:
    task = tiny_task(tmp_path / "task")
    folder, data = task.parent, task.parent / "sums.jsonl"
    out = tmp_path / "report"
    done = owl(
        owl_env,
        "eval",
        "run",
        str(folder / "tiny.yaml"),
        "--model",
        "smollm2",
        "-o",
        str(out),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "tiny_sums" in done.stdout and "acc" in done.stdout

    data.write_text(data.read_text().replace('"gold": 1', '"gold": 0'))  # every answer key moved
    again = owl(owl_env, "eval", "rerun", str(out), "--json", timeout=600)
    check = last_json(again.stdout)["reproduction"]
    assert len(check["changed"]) == 1 and "task tiny_sums's files changed" in check["changed"][0]
    assert str(folder / "tiny.yaml") in check["changed"][0]
    # With the gold answers moved the numbers are not the same, unless smollm2 was as often
    # right about the old gold choices as about the new ones: exit 1 exactly when they differ.
    assert again.returncode == (0 if check["matches"] else 1), again.stderr


def tiny_task(folder: Path, count: int = 3) -> Path:
    """A 3-choice lm-eval YAML task of `count` sums, with its data beside it."""
    folder.mkdir()
    (folder / "tiny.yaml").write_text(TINY_TASK)
    rows = [
        {"a": a, "b": 2, "choices": [str(a + 1), str(a + 2), str(a + 3)], "gold": 1}
        for a in range(count)
    ]
    (folder / "sums.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return folder / "tiny.yaml"


@pytest.mark.slow
def test_a_local_model_and_an_endpoint_in_one_report(
    owl_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open against "closed": the same model stored and behind owl serve, priced, one table."""
    task = tiny_task(tmp_path / "task")
    key = "eval-run-key"
    env_name = "OWL_TEST_EVAL_KEY"
    monkeypatch.setenv(env_name, key)  # the `owl` process gets this environment
    (tmp_path / "serve").mkdir()
    with running_server(tmp_path / "serve", env={"OWL_API_KEYS": key}) as server:
        done = owl(
            owl_env, "eval", "run", str(task), "--model", "smollm2",
            "--endpoint", f"{server.base}/v1", "--endpoint-model", "smollm2",
            "--api-key-env", env_name, "--price", "0.5", "--json", "-o", str(tmp_path / "out"),
            timeout=600,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = last_json(done.stdout)
    local, remote = data["results"]
    assert (local["model"], remote["model"]) == ("smollm2", f"{server.base}/v1/smollm2")
    assert local["metrics"]["acc"] == remote["metrics"]["acc"]  # the same scores, two ways
    assert local["cost_per_1k_questions"] is None
    assert remote["cost_per_1k_questions"] == pytest.approx(0.5 * remote["tokens"] / 3)
    assert [m["digest"] is None for m in data["models"]] == [False, True]
    assert data["options"]["api_key_env"] == env_name
    assert key not in (tmp_path / "out/report.json").read_text()  # the key is never written
    assert "USD / 1k questions" in (tmp_path / "out/report.md").read_text()
