"""Questions per second on a 4-choice multiple-choice task: `owl eval run` (owl's engine
directly) against lm-evaluation-harness (`lm_eval --model local-completions`) through
`owl serve`, the same task, the same model, one run each.

The task is owl's shipped `arithmetic` (lm-eval YAML, 3-shot, 4 choices); lm-eval runs it
from its folder, as that file says it can. Both sides use the same thread count. owl scores
each question's shared context once and its four choices after it; lm-eval sends one
`echo` + `logprobs` completion per choice (context included) and tokenizes through the
server's /tokenize. Rates: questions / the evaluation's own time (owl: the time answering,
from its report; lm-eval: its `total_evaluation_time_seconds`, which leaves out its imports
but keeps its tokenizer calls), and questions / the process's wall time (imports and model
load included). Also how many predictions agree. Prints one JSON line; progress on stderr.
Never a timed assert.

    .venv/bin/python bench/evals.py [--limit 20] [--threads 2] [--batch-size 1]
                                    [--concurrent 1] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from common import cpu_name, free_port, load_average, log, run_and_print

TASK = "arithmetic"
MODEL = "smollm2"
BIN = Path(sys.executable).parent


def environment(home: Path, threads: int) -> dict[str, str]:
    """Offline, in the bench's own OWL_HOME and Hugging Face cache."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(
        OWL_HOME=str(home / "owl-home"),
        OWL_THREADS=str(threads),
        HF_HOME=str(home / "hf-home"),
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        HF_ENDPOINT="http://127.0.0.1:9",  # discard port: never the real Hub
    )
    return env


def owl_eval(args: argparse.Namespace, home: Path, env: dict[str, str]) -> dict:
    out = home / "owl-out"
    command = [str(BIN / "owl"), "eval", "run", TASK, "--model", MODEL, "--limit", str(args.limit)]
    command += ["--threads", str(args.threads), "--json", "-o", str(out)]
    began = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"owl eval run failed:\n{done.stderr}")
    [result] = json.loads(done.stdout.strip().splitlines()[-1])["results"]
    rows = [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]
    return {
        "n": result["n"],
        "acc": result["metrics"]["acc"],
        "eval_s": round(result["seconds"], 2),
        "wall_s": round(wall, 2),
        "predictions": [row["prediction"] for row in rows],
    }


def start_server(home: Path, env: dict[str, str], threads: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [str(BIN / "owl"), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--threads", str(threads)]
    log_file = (home / "server.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                # Loads smollm2 now, so that lm-eval's timed part does not include the load.
                httpx.get(f"{base}/tokenizer_info", params={"model": MODEL}, timeout=120)
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("owl serve did not start")


def lm_eval(args: argparse.Namespace, home: Path, env: dict[str, str], base: str) -> dict:
    from owl.evals.tasks import load_tasks

    folder = Path(load_tasks(TASK)[0].path).parent  # data_files are relative to it
    out = home / "lm-eval-out"
    model_args = f"base_url={base}/v1/completions,model={MODEL},tokenizer_backend=remote"
    model_args += f",num_concurrent={args.concurrent}"
    command = [str(BIN / "lm_eval"), "run", "--model", "local-completions"]
    command += ["--model_args", model_args, "--tasks", TASK, "--include_path", str(folder)]
    command += ["--limit", str(args.limit), "--batch_size", str(args.batch_size)]
    command += ["--log_samples", "--output_path", str(out)]
    began = time.perf_counter()
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"lm_eval failed:\n{done.stderr[-4000:]}")
    [results] = out.glob("*/results_*.json")
    [samples] = out.glob(f"*/samples_{TASK}_*.jsonl")
    data = json.loads(results.read_text())
    rows = sorted(
        (json.loads(line) for line in samples.read_text().splitlines()), key=lambda r: r["doc_id"]
    )
    predictions = []
    for row in rows:
        logprobs = [float(resp[0][0]) for resp in row["resps"]]
        predictions.append(max(range(len(logprobs)), key=logprobs.__getitem__))
    return {
        "n": len(rows),
        "acc": data["results"][TASK]["acc,none"],
        "eval_s": round(float(data["total_evaluation_time_seconds"]), 2),
        "wall_s": round(wall, 2),
        "predictions": predictions,
    }


def rates(side: dict) -> list[int]:
    """Adds the rates to `side`; gives back its predictions."""
    predictions = side.pop("predictions")
    side["questions_per_s"] = round(side["n"] / side["eval_s"], 3)
    side["questions_per_s_wall"] = round(side["n"] / side["wall_s"], 3)
    return predictions


def run(args: argparse.Namespace, home: Path) -> dict:
    env = environment(home, args.threads)
    before = load_average()
    subprocess.run([str(BIN / "owl"), "pull", MODEL], env=env, check=True, capture_output=True)
    log(f"[evals] owl eval run {TASK} --limit {args.limit}")
    ours = owl_eval(args, home, env)
    log(f"[evals] owl: {ours['n']} questions in {ours['eval_s']} s; lm-eval through owl serve")
    process, base = start_server(home, env, args.threads)
    try:
        theirs = lm_eval(args, home, env, base)
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    log(f"[evals] lm-eval: {theirs['n']} questions in {theirs['eval_s']} s")
    our_predictions, their_predictions = rates(ours), rates(theirs)
    return {
        "bench": "evals",
        "task": TASK,
        "model": MODEL,
        "limit": args.limit,
        "threads": args.threads,
        "lm_eval_batch_size": args.batch_size,
        "lm_eval_num_concurrent": args.concurrent,
        "owl_eval": ours,
        "lm_eval_via_owl_serve": theirs,
        "speedup": round(ours["questions_per_s"] / theirs["questions_per_s"], 2),
        "speedup_wall": round(ours["questions_per_s_wall"] / theirs["questions_per_s_wall"], 2),
        "same_predictions": sum(
            a == b for a, b in zip(our_predictions, their_predictions, strict=True)
        ),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": {"before": before, "after": load_average()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=20, help="questions (the task has 40)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--batch-size", type=int, default=1, help="lm-eval's --batch_size")
    parser.add_argument("--concurrent", type=int, default=1, help="lm-eval's num_concurrent")
    parser.add_argument("--home", type=Path, default=None)
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
