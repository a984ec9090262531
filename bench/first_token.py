"""Time to first token of `owl run smollm2 "hi"`, as a person at a terminal sees it.

Each run starts the real console script as a new process and times from the start to the
first byte of the answer on its stdout (Python start-up, imports, loading the model,
the chat template, prompt processing, the first token), and to its exit. One run first,
untimed, registers the embedded model in the store and warms the disk cache.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/first_token.py [--runs 5] [--home DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import cpu_name, load_average, run_and_print

MODEL = "smollm2"
PROMPT = "hi"
TARGET_S = 2.0


def log(message: str) -> None:
    print(f"[first_token] {message}", file=sys.stderr, flush=True)


def owl_command() -> str:
    owl = Path(sys.executable).with_name("owl")
    return str(owl) if owl.exists() else "owl"


def run_once(command: list[str], env: dict[str, str], timeout: float) -> dict:
    """One `owl run`: seconds to the first stdout byte and to exit, and the answer's length.

    A run still going after `timeout` seconds (a sampled answer can ramble on until the
    context is full) is killed; its total_s is then None.
    """
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            bufsize=0,
        )
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            assert process.stdout is not None
            first = process.stdout.read(1)
            first_s = time.perf_counter() - start
            rest = process.stdout.read()
            process.wait()
            total_s = time.perf_counter() - start
        finally:
            timer.cancel()
        timed_out = process.returncode == -signal.SIGKILL
        if (process.returncode != 0 and not timed_out) or not first:
            errors.seek(0)
            message = errors.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{message}")
    answer = (first + rest).decode("utf-8", "replace")
    return {
        "first_byte_s": first_s,
        "total_s": None if timed_out else total_s,
        "answer_chars": len(answer.rstrip("\n")),
    }


def summary(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def run(args: argparse.Namespace, home: Path) -> dict:
    command = [owl_command(), "run", MODEL, args.prompt]
    if args.max_tokens is not None:
        command += ["--max-tokens", str(args.max_tokens)]
    env = {**os.environ, "OWL_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    # The warm-up only registers the model and warms the disk cache: one token will do.
    warmup_command = [owl_command(), "run", MODEL, args.prompt, "--max-tokens", "1"]
    log(f"warm-up: {' '.join(warmup_command)} (OWL_HOME={home})")
    warmup = run_once(warmup_command, env, args.timeout)
    log(f"warm-up: first byte {warmup['first_byte_s']:.2f}s, exit {warmup['total_s']:.2f}s")
    load_before = load_average()
    runs = []
    for index in range(args.runs):
        result = run_once(command, env, args.timeout)
        runs.append(result)
        ended = "killed" if result["total_s"] is None else f"exit {result['total_s']:.3f}s"
        log(
            f"run {index + 1}/{args.runs}: first byte {result['first_byte_s']:.3f}s, "
            f"{ended}, {result['answer_chars']} chars"
        )
    first = [result["first_byte_s"] for result in runs]
    total = [result["total_s"] for result in runs if result["total_s"] is not None]
    return {
        "bench": "first_token",
        "model": MODEL,
        "prompt": args.prompt,
        "runs": args.runs,
        "first_byte_s": summary(first),
        "target_s": TARGET_S,
        "total_s": summary(total),
        "total_per_run_s": [
            None if result["total_s"] is None else round(result["total_s"], 3) for result in runs
        ],
        "killed_after_timeout": sum(result["total_s"] is None for result in runs),
        "timeout_s": args.timeout,
        "command": " ".join([Path(command[0]).name, *command[1:]]),
        "first_byte_per_run_s": [round(value, 3) for value in first],
        "answer_chars": [result["answer_chars"] for result in runs],
        "warmup_first_byte_s": round(warmup["first_byte_s"], 3),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": {"before": load_before, "after": load_average()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument(
        "--max-tokens", type=int, help="pass --max-tokens to owl run (default: none, as a user)"
    )
    parser.add_argument(
        "--timeout", type=float, default=30.0, help="kill a run still going after this many seconds"
    )
    parser.add_argument("--home", type=Path, help="OWL_HOME to use (default: a temporary one)")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    run_and_print(run, args)


if __name__ == "__main__":
    main()
