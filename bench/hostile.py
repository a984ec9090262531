"""Hostile clients: a real `owl serve` on loopback, its normal clients timed with and without them.

8 concurrent normal clients send short chat completions (max_tokens 16) for `--seconds`,
first alone, then while `--hostile` clients replay the inputs of issue 12 round and round:
grammar bombs (maxLength 30000, minItems 200000 and 20000000), lone surrogates, 100,000-deep
JSON, keep_alive 1e308/NaN/"9999999999h" then /api/ps, NaN and 2^63 sampling values, n: 8
with max_tokens 1e9 from a client that gives up after a second, streams cut mid-way, pulls
from a loopback host that never answers and from one that redirects to itself, and bytes
that are not HTTP.

Targets (issue 12): p95 with hostile traffic ≤ 1.5 × without, zero 5xx (a pull's 502 from
a source that fails is the right answer, counted apart), the server alive.

    .venv/bin/python bench/hostile.py [--seconds 20] [--clients 8] [--hostile 4]

Prints one JSON line; progress goes to stderr. Only 127.0.0.1 is ever contacted; it stops
by itself (each phase lasts `--seconds`, every request has a timeout). Never a timed assert.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from common import cpu_name, free_port, load_average, run_and_print

MODEL = "smollm2"
HI = [{"role": "user", "content": "Say hello to a new colleague."}]
HOSTILE_TIMEOUT_S = 30.0
DEPTH = 100_000


def log(message: str) -> None:
    print(f"[hostile] {message}", file=sys.stderr, flush=True)


def start_server(home: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    # Pulls may reach loopback, so that the stalled and looping hosts below are really tried.
    env = {**os.environ, "OWL_HOME": str(home), "OWL_ALLOWED_SOURCES": "private"}
    env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # discard port: never the real Hub
    owl = Path(sys.executable).with_name("owl")
    command = [str(owl), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--ctx", str(args.ctx), "--parallel", str(args.parallel)]
    command += ["--threads", str(args.threads)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("owl serve did not start")


class LoopbackHosts:
    """A host that accepts and never answers, and one whose every path redirects to itself."""

    def __init__(self) -> None:
        self.stalled = socket.create_server(("127.0.0.1", 0))
        self._held: list[socket.socket] = []

        class Loop(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(302)
                self.send_header("Location", self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: object) -> None:
                pass

        self.looping = ThreadingHTTPServer(("127.0.0.1", 0), Loop)
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self.looping.serve_forever, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self._held.append(self.stalled.accept()[0])
            except OSError:
                return

    def urls(self) -> tuple[str, str]:
        stalled = f"http://127.0.0.1:{self.stalled.getsockname()[1]}/model.gguf"
        looping = f"http://127.0.0.1:{self.looping.server_address[1]}/loop.gguf"
        return stalled, looping

    def close(self) -> None:
        self.stalled.shutdown(socket.SHUT_RDWR)
        self.stalled.close()
        for connection in self._held:
            connection.close()
        self.looping.shutdown()
        self.looping.server_close()


Send = Callable[[httpx.AsyncClient], Awaitable[int | str]]  # one hostile request: its status
JSON_HEADERS = {"Content-Type": "application/json"}
GARBAGE = [  # bytes that are not HTTP, or not quite
    b"GARBAGE\r\n\r\n",
    b"\x00\xff" * 64 + b"\r\n\r\n",
    b"POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n",
]
DEEP_ROUTES = ["/api/chat", "/api/generate", "/api/show", "/api/pull", "/api/embed"]
DEEP_ROUTES += ["/v1/chat/completions", "/v1/completions"]


def post(path: str, body: bytes) -> Send:
    async def send(client: httpx.AsyncClient) -> int | str:
        status = (await client.post(path, content=body, headers=JSON_HEADERS)).status_code
        # A pull whose source fails (never answers, redirects in a loop) is rightly a 502.
        return "pull-502" if status == 502 and path == "/api/pull" else status

    return send


def get(path: str) -> Send:
    async def send(client: httpx.AsyncClient) -> int:
        return (await client.get(path)).status_code

    return send


def raw_socket(payload: bytes) -> Send:
    async def send(client: httpx.AsyncClient) -> int | str:
        reader, writer = await asyncio.open_connection(client.base_url.host, client.base_url.port)
        try:
            writer.write(payload)
            await writer.drain()
            reply = await asyncio.wait_for(reader.read(64), HOSTILE_TIMEOUT_S)
        finally:
            writer.close()
        return int(reply[9:12]) if reply.startswith(b"HTTP/1.1 ") else "closed"

    return send


async def abandoned_choices(client: httpx.AsyncClient) -> int | str:
    """n 8 × max_tokens 1e9, from a client that gives up after a second."""
    body = {"model": MODEL, "messages": HI, "n": 8, "max_tokens": 1_000_000_000}
    try:
        return (await client.post("/v1/chat/completions", json=body, timeout=1.0)).status_code
    except httpx.TimeoutException:
        return "left"


async def abandoned_stream(client: httpx.AsyncClient) -> int | str:
    """A stream whose client reads one line and hangs up."""
    body = {"model": MODEL, "prompt": "1, 2, 3,", "max_tokens": 400, "stream": True}
    async with client.stream("POST", "/v1/completions", json=body) as response:
        async for _ in response.aiter_lines():
            break
    return response.status_code


def hostile_inputs(stalled: str, looping: str) -> list[Send]:
    """Issue 12's inputs, each once. json.dumps writes NaN and Infinity as JSON's extensions
    and lone surrogates as their escapes, as careless clients do."""
    chat = {"model": MODEL, "messages": HI, "max_tokens": 1}
    ollama = {"model": MODEL, "stream": False, "options": {"num_predict": 2}}
    integers = {"type": "array", "items": {"type": "integer"}}
    bombs = [{"type": "string", "maxLength": 30000}, {**integers, "minItems": 200_000}]
    bombs.append({**integers, "minItems": 20_000_000})
    bodies: list[tuple[str, dict]] = [
        *(("/v1/chat/completions", {**chat, "response_format": _form(bomb)}) for bomb in bombs),
        ("/api/chat", {**ollama, "messages": HI, "format": bombs[0]}),
        ("/v1/chat/completions", {**chat, "messages": [{"role": "user", "content": "\ud800"}]}),
        ("/api/generate", {**ollama, "prompt": "\udc00", "stream": True}),
        ("/api/generate", {**ollama, "prompt": "hi", "keep_alive": "\ud800"}),
        ("/v1/chat/completions", {**chat, "temperature": math.nan}),
        ("/api/chat", {**ollama, "messages": [], "options": {"top_k": 2**63}}),
        ("/v1/completions", {"model": MODEL, "prompt": "1, 2, 3,", "max_tokens": None}),
        ("/api/pull", {"model": stalled, "insecure": True, "stream": False}),
        ("/api/pull", {"model": looping, "insecure": True, "stream": False}),
        *(
            ("/api/generate", {"model": MODEL, "stream": False, "keep_alive": keep_alive})
            for keep_alive in (1e308, math.inf, math.nan, "9999999999h")
        ),
    ]
    deep = b"[" * DEPTH + b"]" * DEPTH
    return [
        *(post(path, json.dumps(body).encode()) for path, body in bodies),
        get("/api/ps"),  # after the keep_alives above: it must still answer
        *(post(route, deep) for route in DEEP_ROUTES),
        *(raw_socket(payload) for payload in GARBAGE),
        abandoned_choices,
        abandoned_stream,
    ]


def _form(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "hostile", "schema": schema}}


async def normal_client(
    client: httpx.AsyncClient, stop: float, latencies: list, statuses: Counter
) -> None:
    body = {"model": MODEL, "messages": HI, "max_tokens": 16, "temperature": 0}
    while time.monotonic() < stop:
        started = time.perf_counter()
        try:
            response = await client.post("/v1/chat/completions", json=body)
            statuses[response.status_code] += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)
        except httpx.HTTPError:
            statuses["connection_error"] += 1


async def hostile_client(
    base: str, inputs: Iterator[Send], stop: float, statuses: Counter, sent: list[int]
) -> None:
    limits = httpx.Limits(max_keepalive_connections=0)  # a fresh connection each: nothing shared
    async with httpx.AsyncClient(base_url=base, timeout=HOSTILE_TIMEOUT_S, limits=limits) as client:
        while time.monotonic() < stop:
            send = next(inputs)
            sent[0] += 1
            try:
                statuses[await send(client)] += 1
            except (TimeoutError, httpx.HTTPError, OSError):
                statuses["connection_error"] += 1


async def phase(base: str, args: argparse.Namespace, inputs: list[Send], seconds: float) -> dict:
    """`args.clients` normal clients for `seconds`, with `args.hostile` clients replaying
    `inputs` (none: a quiet phase)."""
    stop = time.monotonic() + seconds
    latencies: list[float] = []
    normal: Counter = Counter()
    hostile: Counter = Counter()
    sent = [0]
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        tasks = [normal_client(client, stop, latencies, normal) for _ in range(args.clients)]
        if inputs:
            cycle = itertools.cycle(inputs)
            tasks += [hostile_client(base, cycle, stop, hostile, sent) for _ in range(args.hostile)]
        await asyncio.gather(*tasks)
    return {"latencies": latencies, "normal": normal, "hostile": hostile, "sent": sent[0]}


def p95(values: list[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def fivexx(statuses: Counter) -> int:
    return sum(
        count for status, count in statuses.items() if isinstance(status, int) and status >= 500
    )


def alive(process: subprocess.Popen, base: str) -> bool:
    try:
        healthy = httpx.get(f"{base}/health", timeout=HOSTILE_TIMEOUT_S).status_code == 200
    except httpx.HTTPError:
        healthy = False
    return process.poll() is None and healthy


def run(args: argparse.Namespace, home: Path) -> dict:
    process, base = start_server(home, args)
    hosts = LoopbackHosts()
    try:
        asyncio.run(phase(base, args, [], seconds=2))  # the model loaded, the slots warm
        quiet = asyncio.run(phase(base, args, [], seconds=args.seconds))
        log(f"without hostile traffic: p95 {p95(quiet['latencies'])} s, {dict(quiet['normal'])}")
        loud = asyncio.run(phase(base, args, hostile_inputs(*hosts.urls()), seconds=args.seconds))
        log(f"with hostile traffic: p95 {p95(loud['latencies'])} s, {dict(loud['normal'])}")
        log(f"hostile answers: {dict(loud['hostile'])}")
        server_alive = alive(process, base)
        quiet_p95, loud_p95 = p95(quiet["latencies"]), p95(loud["latencies"])
        return {
            "bench": "hostile",
            "p95_normal_s": round(quiet_p95, 3) if quiet_p95 else None,
            "p95_with_hostile_s": round(loud_p95, 3) if loud_p95 else None,
            "ratio": round(loud_p95 / quiet_p95, 2) if quiet_p95 and loud_p95 else None,
            "hostile_requests": loud["sent"],
            "5xx": fivexx(quiet["normal"]) + fivexx(loud["normal"]) + fivexx(loud["hostile"]),
            "server_alive": server_alive,
            "target_ratio": 1.5,
            "normal_requests": [sum(quiet["normal"].values()), sum(loud["normal"].values())],
            "connection_errors": sum(
                phase_["connection_error"] for phase_ in (quiet["normal"], loud["normal"])
            ),
            "clients": args.clients,
            "seconds": args.seconds,
            "cpu": cpu_name(),
            "threads": args.threads,
            "load_average": load_average(),
        }
    finally:
        hosts.close()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent normal clients")
    parser.add_argument("--hostile", type=int, default=4, help="concurrent hostile clients")
    # One thread, as the tests use: llama.cpp's threads spin-wait for each other, and on a
    # machine shared with the clients two threads can be many times slower than one.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--ctx", type=int, default=1024)
    parser.add_argument("--home", type=Path, default=None)
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
