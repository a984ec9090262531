"""Single-stream decode speed: `owl serve` against llama-cpp-python in-process.

Both ways run the same GGUF file (the embedded smollm2), the same raw prompt, the same
max_tokens, greedy. This machine is noisy (pairs range 0.78-1.27 on a quiet day), so one
round says little: the bench runs `--pairs` (at least 7) pairs, each pair the two ways
back-to-back, the order alternating from pair to pair so that neither way always runs
first or right after the other. Each pair gives one ratio, server / direct; the median
ratio is the figure, quoted with every pair's ratio, the minimum and the maximum.
`--engine` adds owl's engine in-process as a third way, paired with direct the same way.

Decode rate = (tokens - 1) / (time from the first token to the last one): prompt
processing and the HTTP request are left out. Prints one JSON line on stdout; progress
goes to stderr. Never a timed assert: it measures and reports.

    .venv/bin/python bench/decode.py [--pairs 7] [--max-tokens 128] [--engine] [--home DIR]
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
MIN_PAIRS = 7


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


# --- the ways ------------------------------------------------------------------------


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


# --- pairs -----------------------------------------------------------------------------


@dataclass
class Pair:
    way: str  # the way compared with direct
    order: tuple[str, str]
    direct: Sample
    other: Sample

    @property
    def ratio(self) -> float | None:
        return self.other.tps / self.direct.tps if self.direct.tps else None


def run_pairs(
    ways: dict[str, Callable[[], Sample]], compared: list[str], pairs: int
) -> dict[str, list[Pair]]:
    """`pairs` pairs of (direct, way) for every compared way, alternating the order."""
    results: dict[str, list[Pair]] = {name: [] for name in compared}
    for index in range(pairs):
        for name in compared:
            # Even pairs run direct first, odd pairs the other way first: a machine that
            # gets busier (or quieter) during a pair penalises each way equally often.
            order = ("direct", name) if index % 2 == 0 else (name, "direct")
            samples = {way: ways[way]() for way in order}
            pair = Pair(name, order, samples["direct"], samples[name])
            results[name].append(pair)
            ratio = f"{pair.ratio:.3f}" if pair.ratio is not None else "n/a"
            log(
                f"pair {index + 1}/{pairs} {order[0]} then {order[1]}: "
                f"direct {pair.direct.tps:.1f} tok/s, {name} {pair.other.tps:.1f} tok/s, "
                f"ratio {ratio}"
            )
    return results


def summary(name: str, pairs: list[Pair]) -> dict:
    ratios = [pair.ratio for pair in pairs if pair.ratio is not None]
    return {
        f"{name}_vs_direct": round(statistics.median(ratios), 3) if ratios else None,
        f"{name}_vs_direct_pairs": [round(value, 3) for value in ratios],
        f"{name}_vs_direct_min": round(min(ratios), 3) if ratios else None,
        f"{name}_vs_direct_max": round(max(ratios), 3) if ratios else None,
        f"{name}_tps": round(statistics.median(pair.other.tps for pair in pairs), 2),
        f"{name}_first": [pair.order[0] for pair in pairs].count(name),
    }


# --- main ----------------------------------------------------------------------------


def run(args: argparse.Namespace, home: Path) -> dict:
    import httpx
    import llama_cpp

    from owl import engine
    from owl.config import load_settings
    from owl.pull import open_store, resolve

    threads = args.threads
    settings = load_settings(home=home, threads=threads)
    store = open_store(settings)
    manifest = resolve(MODEL, store=store, settings=settings)
    path = store.weights_path(manifest)
    n_ctx = engine.context_size(manifest, settings)
    log(f"model {manifest.display_name}: {path} (n_ctx {n_ctx}, {threads} threads)")

    llama = llama_cpp.Llama(
        model_path=str(path),
        n_ctx=n_ctx,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    model = None
    decode_thread = None
    if args.engine:
        # Both in-process ways then decode on owl's engine thread: with llama.cpp's OpenMP
        # build, once two live threads of a process have each run a decode, every decode
        # gets ~3x slower on a 2-core machine (two OpenMP thread teams, more threads than
        # cores). The engine sends its own work there; the direct way is submitted whole.
        from owl.engine.worker import engine_thread

        model = engine.load(manifest, store=store, settings=settings)
        decode_thread = engine_thread()

    def direct() -> Sample:
        if decode_thread is None:
            return direct_way(llama, args.prompt, args.max_tokens)
        return decode_thread.submit(direct_way, llama, args.prompt, args.max_tokens).result()

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
            "direct": direct,
            "server": lambda: server_way(client, url, args.prompt, args.max_tokens),
        }
        if model is not None:
            ways["engine"] = lambda: engine_way(model, args.prompt, args.max_tokens)
        compared = [name for name in ways if name != "direct"]
        load_before = load_average()
        # The warm-up loads every way's code and pages (the server loads its model on the
        # first request). Direct llama-cpp-python then re-evaluates only the prompt's last
        # token; owl evaluates prompts whole, for deterministic output. Prompt time is
        # outside the decode rate either way.
        for name, way in ways.items():
            sample = way()
            log(f"warm-up {name}: {sample.tps:.1f} tok/s, finish {sample.finish}")
        results = run_pairs(ways, compared, args.pairs)
        load_after = load_average()
    finally:
        client.close()
        stop_server(server)
        if server.returncode in (0, -signal.SIGINT):
            server_log.unlink(missing_ok=True)
        if model is not None:
            model.close()
        llama.close()

    every = [pair for pairs in results.values() for pair in pairs]
    direct_samples = [pair.direct for pair in every]
    tokens = sorted({s.tokens for pair in every for s in (pair.direct, pair.other)})
    same_tokens = tokens == [args.max_tokens]
    if not same_tokens:
        log(f"warning: the ways did not all generate {args.max_tokens} tokens: {tokens}")
    result = {
        "bench": "decode",
        "model": MODEL,
        "max_tokens": args.max_tokens,
        "pairs": args.pairs,
        **summary("server", results["server"]),
        "target_server_vs_direct": TARGET_SERVER_VS_DIRECT,
        "direct_tps": round(statistics.median(s.tps for s in direct_samples), 2),
    }
    for name in compared[1:]:
        result.update(summary(name, results[name]))
    result.update(
        {
            "completion_tokens": tokens[0] if len(tokens) == 1 else tokens,
            "same_tokens": same_tokens,
            "finish": sorted({str(s.finish) for pair in every for s in (pair.direct, pair.other)}),
            "first_token_ms": {
                "direct": round(statistics.median(s.first_s for s in direct_samples) * 1000, 1),
                **{
                    name: round(statistics.median(p.other.first_s for p in pairs) * 1000, 1)
                    for name, pairs in results.items()
                },
            },
            "n_ctx": n_ctx,
            "threads": threads,
            "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
            "load_average": {"before": load_before, "after": load_after},
            "llama_cpp_python": llama_cpp.__version__,
        }
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=MIN_PAIRS, help="at least 7")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--prompt", default=PROMPT)
    parser.add_argument("--engine", action="store_true", help="pair owl's engine with direct too")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="llama.cpp threads, every way"
    )
    parser.add_argument("--home", type=Path, help="OWL_HOME to use (default: a temporary one)")
    args = parser.parse_args()
    if args.max_tokens < 2 or args.threads < 1:
        parser.error("--max-tokens must be at least 2, --threads at least 1")
    if args.pairs < MIN_PAIRS:
        parser.error(f"--pairs must be at least {MIN_PAIRS}: on a noisy machine fewer say little")
    run_and_print(run, args)


if __name__ == "__main__":
    main()
