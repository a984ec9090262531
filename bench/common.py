"""What bench/*.py share: the machine report, and running in a temporary OWL_HOME."""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
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
    if args.home is not None:
        result = run(args, args.home.expanduser().resolve())
    else:
        with tempfile.TemporaryDirectory(prefix="owl-bench-") as home:
            result = run(args, Path(home))
    result["bench_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result), flush=True)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server the bench starts)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
