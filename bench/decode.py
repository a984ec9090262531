"""Single-stream decode speed: llama-cpp-python directly vs owl's engine vs `owl serve`.

All three run the same GGUF file (the embedded smollm2), the same raw prompt, the same
max_tokens, greedy. The ways alternate within each round, after a warm-up round, so that
a machine getting busier or quieter affects them alike; the ratios come from one run.

Decode rate = (tokens - 1) / (time from the first token to the last one): prompt
processing and the HTTP request are left out. Prints one JSON line on stdout; progress
goes to stderr. Never a timed assert: it measures and reports.

    .venv/bin/python bench/decode.py [--max-tokens 128] [--rounds 3] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common import cpu_name, free_port, load_average, run_and_print

MODEL = "smollm2"
# A raw completion prompt that greedy decoding continues for well over 128 tokens
# (checked: the reported finish reasons are "length" and the token counts match).
PROMPT = (
    "The history of the Roman Empire spans more than a thousand years. "
    "In this chapter we follow it from the founding of the city to the fall of "
    "Constantinople. It began"
)
TARGET_SERVER_VS_DIRECT = 0.95


def log(message: str) -> None:
    print(f"[decode] {message}", file=sys.stderr, flush=True)


@dataclass
class Sample:
    tokens: int  # completion tokens, from the way's own count
    chunks: int  # pieces of text the way delivered
    first_s: float  # request start -> first token
    span_s: float  # first token -> last token
    finish: str | None

    @property
    def tps(self) -> float:
        return (self.tokens - 1) / self.span_s if self.span_s > 0 and self.tokens > 1 else 0.0


# --- the three ways ------------------------------------------------------------------


def direct_way(llama, prompt: str, max_tokens: int) -> Sample:
    start = time.perf_counter()
    first = last = None
    chunks, finish = 0, None
    for chunk in llama.create_completion(prompt, max_tokens=max_tokens, temperature=0, stream=True):
        choice = chunk["choices"][0]
        now = time.perf_counter()
        if choice["text"]:
            chunks += 1
            first = first if first is not None else now
            last = now
        finish = choice["finish_reason"] or finish
    assert first is not None and last is not None, "no text came back"
    # create_completion reports no usage when streaming; without stop strings it yields a
    # chunk per token except while a UTF-8 character is incomplete, and "length" means
    # exactly max_tokens tokens.
    tokens = max_tokens if finish == "length" else chunks
    return Sample(tokens, chunks, first - start, last - first, finish)


def engine_way(model, prompt: str, max_tokens: int) -> Sample:
    from owl.engine import SamplingParams

    params = SamplingParams(temperature=0, max_tokens=max_tokens)
    start = time.perf_counter()
    first = last = None
    chunks, usage, finish = 0, None, None
    for delta in model.complete(prompt, params):
        now = time.perf_counter()
        if delta.text:
            chunks += 1
            first = first if first is not None else now
            last = now
        if delta.finish_reason is not None:
            usage, finish = delta.usage, delta.finish_reason
    assert first is not None and last is not None and usage is not None
    return Sample(usage.completion_tokens, chunks, first - start, last - first, finish)


def server_way(client, url: str, prompt: str, max_tokens: int) -> Sample:
    body = {
        "model": MODEL,
        "prompt": prompt,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    start = time.perf_counter()
    first = last = None
    chunks, usage, finish = 0, None, None
    with client.stream("POST", f"{url}/v1/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: ") :]
            if data == "[DONE]":
                break
            now = time.perf_counter()
            event = json.loads(data)
            if "error" in event:
                raise RuntimeError(f"server error: {event['error']}")
            if event.get("usage"):
                usage = event["usage"]
            if not event.get("choices"):
                continue
            choice = event["choices"][0]
            if choice.get("text"):
                chunks += 1
                first = first if first is not None else now
                last = now
            finish = choice.get("finish_reason") or finish
    assert first is not None and last is not None and usage is not None
    return Sample(usage["completion_tokens"], chunks, first - start, last - first, finish)


# --- the server process ------------------------------------------------------------------


def start_server(home: Path, port: int, threads: int, server_log: Path) -> subprocess.Popen:
    owl = Path(sys.executable).with_name("owl")
    command = [str(owl) if owl.exists() else "owl", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--threads", str(threads)]
    env = {**os.environ, "OWL_HOME": str(home)}
    log(f"starting {' '.join(command)} (log: {server_log})")
    # Its log goes to a file: a pipe nobody reads could fill up and stall the server.
    with server_log.open("wb") as sink:
        return subprocess.Popen(
            command, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_healthy(
    client, url: str, server: subprocess.Popen, server_log: Path, timeout: float = 60.0
) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            err = server_log.read_text(errors="replace")
            raise RuntimeError(f"owl serve exited with {server.returncode}:\n{err[-2000:]}")
        try:
            if client.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"owl serve did not answer {url}/health within {timeout:.0f}s")


def stop_server(server: subprocess.Popen) -> None:
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGINT)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# --- main ----------------------------------------------------------------------------


def run(args: argparse.Namespace, home: Path) -> dict:
    import httpx
    import llama_cpp

    from owl import engine
    from owl.config import load_settings
    from owl.store import open_store, resolve

    threads = args.threads
    settings = load_settings(home=home, threads=threads)
    store = open_store(settings)
    manifest = resolve(MODEL, store=store, settings=settings)
    path = store.weights_path(manifest)
    n_ctx = engine.context_size(manifest, settings)
    log(f"model {manifest.display_name}: {path} (n_ctx {n_ctx}, {threads} threads)")

    # Both in-process ways decode on owl's engine thread: with llama.cpp's OpenMP build,
    # once two live threads of a process have each run a decode, every decode gets ~3x
    # slower on a 2-core machine (two OpenMP thread teams, more threads than cores). The
    # engine sends its own work there; the direct way is submitted to it whole.
    from owl.engine.worker import engine_thread

    llama = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    model = engine.load(manifest, store=store, settings=settings)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    descriptor, log_name = tempfile.mkstemp(prefix="owl-bench-serve-", suffix=".log")
    os.close(descriptor)
    server_log = Path(log_name)
    server = start_server(home, port, threads, server_log)
    client = httpx.Client(timeout=httpx.Timeout(300.0, connect=10.0))
    try:
        wait_healthy(client, url, server, server_log)
        ways: dict[str, Callable[[], Sample]] = {
            "direct": lambda: (
                engine_thread().submit(direct_way, llama, args.prompt, args.max_tokens).result()
            ),
            "engine": lambda: engine_way(model, args.prompt, args.max_tokens),
            "server": lambda: server_way(client, url, args.prompt, args.max_tokens),
        }
        samples: dict[str, list[Sample]] = {name: [] for name in ways}
        load_before = load_average()
        # The warm-up loads every way's code and pages. (Direct llama-cpp-python then
        # re-evaluates only the prompt's last token; owl evaluates prompts whole, for
        # deterministic output. Prompt time is outside the decode rate either way.)
        for round_index in range(args.rounds + 1):
            warmup = round_index == 0
            # Rotate the order so no way always runs first (or right after the server).
            names = list(ways)
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                sample = ways[name]()
                label = "warm-up" if warmup else f"round {round_index}/{args.rounds}"
                log(
                    f"{label} {name}: {sample.tps:.1f} tok/s, {sample.tokens} tokens in "
                    f"{sample.chunks} chunks, first token {sample.first_s * 1000:.0f} ms, "
                    f"finish {sample.finish}"
                )
                if not warmup:
                    samples[name].append(sample)
        load_after = load_average()
    finally:
        client.close()
        stop_server(server)
        if server.returncode in (0, -signal.SIGINT):
            server_log.unlink(missing_ok=True)
        model.close()
        llama.close()

    def median(name: str, field: str) -> float:
        return statistics.median(getattr(sample, field) for sample in samples[name])

    tps = {name: median(name, "tps") for name in samples}
    tokens = {name: sorted({sample.tokens for sample in samples[name]}) for name in samples}
    counts = {name: values[0] if len(values) == 1 else values for name, values in tokens.items()}
    same_tokens = all(values == [args.max_tokens] for values in tokens.values())
    if not same_tokens:
        log(f"warning: the ways did not all generate {args.max_tokens} tokens: {counts}")

    def ratio(name: str, rates: dict[str, float]) -> float | None:
        return round(rates[name] / rates["direct"], 3) if rates["direct"] else None

    # Other work on the machine only ever slows a way down, so the best round of each is a
    # second, steadier estimate; a wide spread between rounds says the machine was busy.
    best = {name: max(sample.tps for sample in samples[name]) for name in samples}
    spread = {
        name: round(best[name] / min(sample.tps for sample in samples[name]), 2)
        if min(sample.tps for sample in samples[name]) > 0
        else None
        for name in samples
    }
    noisy = any(value is None or value > 1.2 for value in spread.values())
    if noisy:
        log(f"warning: rounds differ by up to {spread}x; the machine was busy, compare the best_*")

    return {
        "bench": "decode",
        "model": MODEL,
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        "direct_tps": round(tps["direct"], 2),
        "engine_tps": round(tps["engine"], 2),
        "server_tps": round(tps["server"], 2),
        "engine_vs_direct": ratio("engine", tps),
        "server_vs_direct": ratio("server", tps),
        "target_server_vs_direct": TARGET_SERVER_VS_DIRECT,
        "best_tps": {name: round(value, 2) for name, value in best.items()},
        "best_engine_vs_direct": ratio("engine", best),
        "best_server_vs_direct": ratio("server", best),
        "spread": spread,
        "noisy": noisy,
        "tps_per_round": {name: [round(s.tps, 2) for s in samples[name]] for name in samples},
        "completion_tokens": counts,
        "same_tokens": same_tokens,
        "chunks": {name: round(median(name, "chunks")) for name in samples},
        "finish": {name: samples[name][-1].finish for name in samples},
        "first_token_ms": {name: round(median(name, "first_s") * 1000, 1) for name in samples},
        "n_ctx": n_ctx,
        "threads": threads,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": {"before": load_before, "after": load_after},
        "llama_cpp_python": llama_cpp.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads, all three ways"
    )
    parser.add_argument("--home", type=Path, help="OWL_HOME to use (default: a temporary one)")
    args = parser.parse_args()
    if args.max_tokens < 2 or args.rounds < 1 or args.threads < 1:
        parser.error("--max-tokens must be at least 2, --rounds and --threads at least 1")
    run_and_print(run, args)


if __name__ == "__main__":
    main()
