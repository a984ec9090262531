"""Serving many users: a real `owl serve` on loopback, driven by concurrent streaming clients.

Measures, in one run (each figure on the same machine, minutes apart):
- throughput: aggregate streamed tokens/s with 1, 2, 4, 8 concurrent clients, each asking
  for `--tokens` tokens (greedy, ignore EOS is not available: prompts that ramble are used
  and the tokens actually streamed are counted);
- prompt cache: time to first token of a second chat turn that shares a long prefix
  (a system prompt of ~`--prefix` tokens plus the first turn) ÷ the first turn's;
- memory: the server's RSS with the bundled model loaded and idle, against its file size;
- load: `--load-clients` clients for `--load-seconds` s; 5xx count, RSS growth.

Targets (issue 6): 8 clients ≥ 1.6 × one client, one client ≥ 100 tok/s, second-turn TTFT
ratio ≤ 0.25, RSS ≤ model file + 250 MB, zero 5xx and RSS growth < 10% under load.

    .venv/bin/python bench/serve.py [--threads 2] [--parallel 8] [--skip-load]

Prints one JSON line; progress goes to stderr. Never a timed assert.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from common import cpu_name, free_port, load_average, run_and_print

MODEL = "smollm2"
PROMPTS = [
    "Write a long story about a dragon who learns to cook.",
    "Explain in detail how a steam engine works.",
    "Describe a walk through a busy market, with every smell and sound.",
    "Write a letter to a friend about your travels in the mountains.",
    "Tell the history of the bicycle, step by step.",
    "Describe how bread is made, from the field to the table.",
    "Write a long poem about the sea and the sailors on it.",
    "Explain how a city's water supply works.",
]


def log(message: str) -> None:
    print(f"[serve] {message}", file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_server(home: Path, args: argparse.Namespace) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "OWL_HOME": str(home), "OWL_THREADS": str(args.threads)}
    owl = Path(sys.executable).with_name("owl")
    command = [str(owl), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--ctx", str(args.ctx), "--parallel", str(args.parallel)]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("owl serve did not start")


async def stream_chat(
    client: httpx.AsyncClient, messages: list[dict], max_tokens: int
) -> dict[str, float]:
    """One streamed chat: seconds to the first content, tokens streamed, status."""
    body = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        if response.status_code != 200:
            await response.aread()
            return {"status": response.status_code, "ttft": 0.0, "tokens": 0, "text": ""}
        text = []
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage") and not event.get("choices"):
                tokens = event["usage"]["completion_tokens"]
            for choice in event.get("choices", []):
                content = choice.get("delta", {}).get("content")
                if content:
                    first = first or time.perf_counter()
                    text.append(content)
    return {
        "status": 200,
        "ttft": (first or time.perf_counter()) - started,
        "tokens": tokens,
        "text": "".join(text),
        "seconds": time.perf_counter() - started,
    }


async def throughput(base: str, clients: int, max_tokens: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                stream_chat(
                    client, [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], max_tokens
                )
                for i in range(clients)
            )
        )
        elapsed = time.perf_counter() - started
    tokens = sum(result["tokens"] for result in results)
    return {
        "clients": clients,
        "tokens": tokens,
        "seconds": round(elapsed, 2),
        "tok_s": round(tokens / elapsed, 1),
    }


async def prompt_cache(base: str, prefix_tokens: int) -> dict[str, float]:
    # A long system prompt shared by both turns, ~1.3 tokens per word for English text.
    words = ("The assistant works for a library and knows its rules well. " * 200).split()
    system = " ".join(words[: int(prefix_tokens / 1.3)])
    first_turn = [
        {"role": "system", "content": system},
        {"role": "user", "content": "Summarise the rules in one sentence."},
    ]
    async with httpx.AsyncClient(base_url=base, timeout=600) as client:
        first = await stream_chat(client, first_turn, 16)
        second_turn = [
            *first_turn,
            {"role": "assistant", "content": first["text"]},
            {"role": "user", "content": "And what do they say about late returns?"},
        ]
        second = await stream_chat(client, second_turn, 16)
    return {
        "first_ttft_s": round(first["ttft"], 3),
        "second_ttft_s": round(second["ttft"], 3),
        "ratio": round(second["ttft"] / first["ttft"], 3),
    }


async def load(base: str, pid: int, clients: int, seconds: float) -> dict[str, float]:
    statuses: dict[int, int] = {}
    rss_start = rss_bytes(pid)
    deadline = time.monotonic() + seconds

    async def user(i: int, client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            try:
                result = await stream_chat(
                    client, [{"role": "user", "content": PROMPTS[i % len(PROMPTS)]}], 16
                )
                statuses[result["status"]] = statuses.get(result["status"], 0) + 1
            except httpx.HTTPError:
                statuses[-1] = statuses.get(-1, 0) + 1

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:
        await asyncio.gather(*(user(i, client) for i in range(clients)))
    rss_end = rss_bytes(pid)
    return {
        "clients": clients,
        "seconds": seconds,
        "requests": sum(statuses.values()),
        "statuses": {str(key): value for key, value in sorted(statuses.items())},
        "server_errors": sum(v for k, v in statuses.items() if k >= 500 or k == -1),
        "rss_start_mb": round(rss_start / 2**20, 1),
        "rss_end_mb": round(rss_end / 2**20, 1),
        "rss_growth": round(rss_end / rss_start - 1, 3) if rss_start else None,
    }


def run(args: argparse.Namespace, home: Path) -> dict:
    process, base = start_server(home, args)
    try:
        # Load the model and warm up.
        asyncio.run(throughput(base, 1, 8))
        pid = process.pid
        model_file = json.loads(
            subprocess.run(
                [str(Path(sys.executable).with_name("owl")), "show", MODEL, "--json"],
                env={**os.environ, "OWL_HOME": str(home)},
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        size = model_file.get("size") or model_file.get("file_size") or 0
        rss_idle = rss_bytes(pid)
        log(f"rss idle {rss_idle / 2**20:.0f} MB")
        rows = []
        for clients in args.clients:
            row = asyncio.run(throughput(base, clients, args.tokens))
            log(f"{row}")
            rows.append(row)
        single = rows[0]["tok_s"]
        cache = asyncio.run(prompt_cache(base, args.prefix))
        log(f"prompt cache {cache}")
        result = {
            "bench": "serve",
            "cpu": cpu_name(),
            "threads": args.threads,
            "parallel": args.parallel,
            "ctx": args.ctx,
            "tokens_per_client": args.tokens,
            "throughput": rows,
            "speedup_max_vs_1": round(rows[-1]["tok_s"] / single, 2) if single else None,
            "prompt_cache": cache,
            "rss_idle_mb": round(rss_idle / 2**20, 1),
            "model_file_mb": round(size / 2**20, 1) if size else None,
            "rss_over_model_mb": round((rss_idle - size) / 2**20, 1) if size else None,
        }
        if not args.skip_load:
            result["load"] = asyncio.run(load(base, pid, args.load_clients, args.load_seconds))
            log(f"load {result['load']}")
        result["load_average"] = load_average()
        return result
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--ctx", type=int, default=2048)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--prefix", type=int, default=1000)
    parser.add_argument("--load-clients", type=int, default=64)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--home", type=Path, default=None)
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
