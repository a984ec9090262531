"""Start a real `owl serve` on loopback for a test, and check that it stops cleanly."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import cli_env

OWL = Path(sys.executable).with_name("owl")
SERVER_CTX = 512  # small, so that a long prompt overflows it cheaply
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20
# One thread: llama.cpp's threads spin-wait for each other, so on a small machine shared
# with other work two threads can be many times slower than one.
SERVER_THREADS = 1


@dataclass
class Server:
    base: str  # http://127.0.0.1:PORT
    home: Path
    log: Path
    process: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(server: Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            pytest.fail(
                f"owl serve exited with {server.process.returncode} before answering /health:\n"
                f"{server.log_text()}"
            )
        try:
            if httpx.get(f"{server.base}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.process.kill()
    server.process.wait()
    pytest.fail(f"owl serve gave no /health within {START_TIMEOUT_S}s:\n{server.log_text()}")


@contextmanager
def running_server(
    root: Path,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    answers_500: bool = False,
) -> Iterator[Server]:
    """`owl serve --ctx 512 ARGS` over root/owl-home, with `env` added to its environment;
    it must stop cleanly, and never answer 500 unless the test breaks the server's own
    state on purpose (`answers_500`)."""
    home = root / "owl-home"
    env = {
        **cli_env(home),
        "HF_HOME": str(root / "hf-home"),
        "HF_ENDPOINT": "http://127.0.0.1:9",  # discard port: never the real Hub, unless a test's
        **(env or {}),
        "PYTHONUNBUFFERED": "1",
    }
    port = _free_port()
    log = root / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                str(OWL),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--ctx",
                str(SERVER_CTX),
                "--threads",
                str(SERVER_THREADS),
                *args,
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = Server(base=f"http://127.0.0.1:{port}", home=home, log=log, process=process)
    try:
        _wait_healthy(running)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                output = running.log_text()
                pytest.fail(f"owl serve did not stop within {STOP_TIMEOUT_S}s:\n{output}")
    text = running.log_text()
    # uvicorn shuts down gracefully on SIGTERM, then re-raises it: -SIGTERM is a clean exit.
    code = process.returncode
    assert code in (0, -signal.SIGTERM), f"owl serve exited with {code}:\n{text}"
    assert "Application shutdown complete" in text, f"no graceful shutdown:\n{text}"
    assert "Traceback" not in text, f"the server logged a traceback:\n{text}"
    assert answers_500 or '" 500 ' not in text, f"the server answered 500:\n{text}"
