"""Parity with lm-evaluation-harness: the real `lm_eval` program against a real `owl serve`,
and `owl eval run` on the same lm-eval YAML task, give the same prediction for every
multiple-choice question and the same accuracy.

lm-eval runs as a user runs it (a subprocess, offline): `local-completions` with
`tokenizer_backend=remote` (owl's GET /tokenizer_info, POST /tokenize), token-id prompts,
several prompts in one request (`--batch_size`) and two requests at once (`num_concurrent`).
Two tasks: a 4-choice one written here (log-likelihoods: `echo` + `logprobs`, batched and
concurrent: a scored prompt's numbers do not depend on what else runs) — the same choice for
every question; and owl's shipped `units` (generate_until), the first UNITS_LIMIT questions —
the same prompt and stop sequences for every question, and owl's filter and exact_match give
lm-eval's on lm-eval's own answers. The generated texts themselves are not compared: a greedy
answer on a near-tie flips with how the prompt was read (whole, after a cached prefix, in
another process), and on units one did (owl serve " 50", owl eval's engine " 5").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from owl.evals.tasks import load_tasks
from owl.evals.tasks.request import Answer
from tests.support.cli import owl
from tests.support.owl_server import running_server

LM_EVAL = Path(sys.executable).with_name("lm_eval")
UNITS_LIMIT = 6
LM_EVAL_TIMEOUT_S = 900  # its imports alone take most of a minute on a busy 2-core machine

# A 4-choice task in lm-eval's own YAML form, with one few-shot example drawn by lm-eval's
# seeded sampler (owl draws the same one), and choices of different lengths so that acc_norm
# can disagree with acc.
TASK = """\
task: parity_sums
dataset_path: json
dataset_kwargs:
  data_files:
    train: train.jsonl
    test: test.jsonl
training_split: train
fewshot_split: train
test_split: test
num_fewshot: 1
output_type: multiple_choice
doc_to_text: "Question: What is {{a}} + {{b}}?\\nAnswer:"
doc_to_choice: choices
doc_to_target: gold
metric_list:
  - metric: acc
  - metric: acc_norm
"""
TRAIN = [
    {"a": 2, "b": 2, "choices": ["4", "22", "5", "0"], "gold": 0},
    {"a": 10, "b": 5, "choices": ["105", "15", "50", "5"], "gold": 1},
]
TEST = [
    {"a": 3, "b": 5, "choices": ["8", "35", "2", "15"], "gold": 0},
    {"a": 7, "b": 6, "choices": ["12", "13", "76", "1"], "gold": 1},
    {"a": 12, "b": 9, "choices": ["20", "129", "21", "3"], "gold": 2},
    {"a": 20, "b": 30, "choices": ["2030", "10", "600", "50"], "gold": 3},
    {"a": 1, "b": 8, "choices": ["9", "18", "81", "7"], "gold": 0},
    {"a": 45, "b": 5, "choices": ["40", "50", "455", "225"], "gold": 1},
]


def write_tasks(folder: Path) -> Path:
    """The MC task written here, and a copy of the shipped units task (only the first
    UNITS_LIMIT questions), in one folder: lm-eval reads data_files relative to where it runs."""
    folder.mkdir()
    (folder / "parity_sums.yaml").write_text(TASK)
    for name, rows in (("train", TRAIN), ("test", TEST)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    shipped = Path(load_tasks("units")[0].path).parent
    shutil.copy(shipped / "units.yaml", folder)
    shutil.copy(shipped / "units.train.jsonl", folder)
    test = (shipped / "units.test.jsonl").read_text().splitlines(keepends=True)
    (folder / "units.test.jsonl").write_text("".join(test[:UNITS_LIMIT]))
    return folder


def offline_env(root: Path) -> dict[str, str]:
    """lm-eval's environment: no Hub, no network, its caches under the test's folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "OPENAI_"))}
    env.update(
        HF_HOME=str(root / "hf-home"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_ENDPOINT="http://127.0.0.1:9",  # discard port: never the real Hub
        TRANSFORMERS_OFFLINE="1",
        NO_PROXY="127.0.0.1",
    )
    return env


def run_lm_eval(
    base: str,
    task_folder: Path,
    out: Path,
    env: dict[str, str],
    *,
    task: str,
    batch: int,
) -> None:
    """`lm_eval run` on `task`: `batch` prompts in a request and `batch` requests at once."""
    model_args = ",".join(
        [
            f"base_url={base}/v1/completions",
            "model=smollm2",
            "tokenizer_backend=remote",
            f"num_concurrent={batch}",
            "max_retries=1",
        ]
    )
    done = subprocess.run(
        [
            str(LM_EVAL), "run", "--model", "local-completions", "--model_args", model_args,
            "--tasks", task, "--include_path", str(task_folder),
            "--batch_size", str(batch), "--log_samples", "--output_path", str(out),
        ],
        cwd=task_folder,  # lm-eval reads data_files relative to where it runs
        env=env,
        capture_output=True,
        text=True,
        timeout=LM_EVAL_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-8000:]


def lm_eval_outputs(out: Path, task: str) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """lm-eval's aggregate results for `task`, and its samples by doc_id."""
    [results] = out.glob("*/results_*.json")
    [samples] = out.glob(f"*/samples_{task}_*.jsonl")
    rows = [json.loads(line) for line in samples.read_text().splitlines()]
    return json.loads(results.read_text())["results"][task], {r["doc_id"]: r for r in rows}


def owl_rows(out: Path, task: str) -> list[dict[str, Any]]:
    lines = (out / "answers.jsonl").read_text().splitlines()
    return [row for row in map(json.loads, lines) if row["task"] == task]


def lm_eval_prediction(sample: dict[str, Any]) -> int:
    """The choice of highest log-likelihood, as lm-eval's acc takes it (argmax of resps)."""
    logprobs = [float(resp[0][0]) for resp in sample["resps"]]
    return max(range(len(logprobs)), key=logprobs.__getitem__)


@pytest.mark.slow
@pytest.mark.timeout(1800)  # two real clients of one small model, one after the other
def test_lm_eval_through_owl_serve_agrees_with_owl_eval(owl_env: Path, tmp_path: Path) -> None:
    folder = write_tasks(tmp_path / "tasks")
    (tmp_path / "serve").mkdir()
    with running_server(tmp_path / "serve") as server:
        # As lm-eval's remote tokenizer asks, naming no model: the home holds owl's bundled
        # speech models too, and the answer is for its one text model.
        info = httpx.get(f"{server.base}/tokenizer_info", timeout=120)
        assert info.status_code == 200, info.text
        env = offline_env(tmp_path)
        run_lm_eval(server.base, folder, tmp_path / "lm-mc", env, task="parity_sums", batch=4)
        run_lm_eval(server.base, folder, tmp_path / "lm-gen", env, task="units", batch=1)

    out = tmp_path / "owl-out"
    done = owl(owl_env, "eval", "run", str(folder / "parity_sums.yaml"), "--model", "smollm2",
               "--json", "-o", str(out), timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout.strip().splitlines()[-1])["results"]

    # Multiple choice: the same choice for every question, the same acc and acc_norm.
    lm_results, samples = lm_eval_outputs(tmp_path / "lm-mc", "parity_sums")
    rows = owl_rows(out, "parity_sums")
    assert sorted(samples) == [row["index"] for row in rows] == list(range(len(TEST)))
    differences = []
    for row in rows:
        sample = samples[row["index"]]
        theirs = [float(resp[0][0]) for resp in sample["resps"]]
        ours = [answer["logprob"] for answer in row["answers"]]
        differences.append(max(abs(a - b) for a, b in zip(theirs, ours, strict=True)))
        where = f"question {row['index']}: lm-eval {theirs}, owl {ours}"
        assert row["prediction"] == lm_eval_prediction(sample), where
        assert row["metrics"]["acc"] == sample["acc"], where
        assert row["metrics"]["acc_norm"] == sample["acc_norm"], where
    assert_same_aggregate(result, lm_results, ("acc", "acc_norm"), len(TEST))
    print(f"largest |lm-eval - owl| choice log-likelihood: {max(differences):.4f}")

    # Generation: the same prompts and stop sequences; owl's filter and metric on lm-eval's
    # own answers give lm-eval's filtered answers and scores.
    lm_results, samples = lm_eval_outputs(tmp_path / "lm-gen", "units")
    [units] = load_tasks(str(folder / "units.yaml"))
    questions = units.questions()
    assert sorted(samples) == [q.index for q in questions] == list(range(UNITS_LIMIT))
    scores = []
    for question in questions:
        sample = samples[question.index]
        [request] = question.requests
        context, options = sample["arguments"]["gen_args_0"].values()
        assert request.context == context, question.index
        assert list(request.until) == options["until"], question.index
        assert request.max_tokens == options["max_gen_toks"], question.index
        answer = [Answer(text=sample["resps"][0][0])]
        assert units.prediction(question, answer) == sample["filtered_resps"][0], sample["resps"]
        scores.append(units.score(question, answer))
        assert scores[-1]["exact_match"] == sample["exact_match"], sample["resps"]
    ours = {"n": len(scores), "metrics": units.aggregate(scores)}
    assert_same_aggregate(ours, lm_results, ("exact_match",), UNITS_LIMIT)


def assert_same_aggregate(
    ours: dict[str, Any], theirs: dict[str, Any], metrics: tuple[str, ...], n: int
) -> None:
    """owl's result for a task against lm-eval's: n, each metric and its standard error
    (lm-eval names them "METRIC,FILTER": "none", or the task's one filter)."""
    assert ours["n"] == n
    for metric in metrics:
        [key] = [k for k in theirs if k.startswith(f"{metric},")]
        stderr = key.replace(",", "_stderr,", 1)
        assert ours["metrics"][metric] == pytest.approx(theirs[key]), metric
        assert ours["metrics"][f"{metric}_stderr"] == pytest.approx(theirs[stderr]), metric
