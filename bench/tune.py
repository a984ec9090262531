"""`owl tune` on SmolLM2-135M: training tokens/s, adapter size, time to export.

Runs owl.tune.tune on the bundled SmolLM2-135M-Instruct (Q4_1 GGUF, dequantized to float32
by transformers once per OWL_HOME: `dequantize_s`, 0 when cached) over a generated dataset
of short field-extraction examples (chat, prompt/completion and text lines), LoRA rank 8
on every attention and MLP projection, with all of settings.threads (all cores unless
OWL_THREADS says otherwise).

- `tokens_per_s`: training tokens (padding excluded) per second of the training loop,
  forward + backward + AdamW; `steps`, `batch_size`, `max_len` say what was measured.
- `export_s`: PEFT adapter → GGUF LoRA (llama.cpp's converter in a subprocess, torch import
  included) → scanned and stored; `adapter_gguf_bytes`, `adapter_peft_bytes`.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/tune.py [--steps 16] [--batch-size 4] [--home DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from common import cpu_name, load_average, run_and_print

from owl.config import Settings
from owl.pull import open_store, pull
from owl.tune import TuneOptions, tune

NAMES = ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov")
CITIES = ("London", "Paris", "Berlin", "Oslo", "Rome", "Lisbon")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def dataset(path: Path, count: int) -> Path:
    lines = []
    for index in range(count):
        name, city = NAMES[index % len(NAMES)], CITIES[index % len(CITIES)]
        text = f"{name} flew to {city} on day {index + 1} of the conference."
        answer = json.dumps({"name": name, "city": city, "day": index + 1})
        if index % 3 == 0:
            line = {
                "messages": [
                    {"role": "user", "content": f"Extract name, city and day as JSON: {text}"},
                    {"role": "assistant", "content": answer},
                ]
            }
        elif index % 3 == 1:
            line = {"prompt": f"Text: {text}\nJSON:", "completion": f" {answer}"}
        else:
            line = {"text": f"{text} As JSON: {answer}"}
        lines.append(json.dumps(line) + "\n")
    path.write_text("".join(lines))
    return path


def run(args: argparse.Namespace, home: Path) -> dict:
    settings = Settings(home=home)
    store = open_store(settings)
    base = pull("smollm2", store=store, settings=settings)
    data = dataset(home / "bench-tune.jsonl", args.examples)
    marks: dict[str, float] = {}

    def status(message: str) -> None:
        marks[message.split(" ", 1)[0]] = time.perf_counter()
        log(message)

    def progress(report) -> None:  # noqa: ANN001
        if report.step % 4 == 0 or report.step == report.total:
            log(
                f"step {report.step}/{report.total} loss {report.loss:.3f} "
                f"{report.tokens_per_s:.0f} tok/s"
            )

    load_before = load_average()
    name = f"bench-{int(time.time())}"
    started = time.perf_counter()
    adapter = tune(
        base,
        data=data,
        name=name,
        options=TuneOptions(max_steps=args.steps, batch_size=args.batch_size, max_len=args.max_len),
        store=store,
        settings=settings,
        progress=progress,
        status=status,
    )
    ended = time.perf_counter()
    info = adapter.info["tune"]
    sizes = {entry.role: entry.size for entry in adapter.files}
    return {
        "bench": "tune",
        "model": "smollm2 (SmolLM2-135M-Instruct Q4_1 → float32)",
        "threads": settings.threads,
        "steps": info["steps"],
        "batch_size": args.batch_size,
        "max_len": args.max_len,
        "rank": info["rank"],
        "tokens_per_s": info["tokens_per_s"],
        "train_loss": round(info["train_loss"], 4),
        "dequantize_s": round(marks["training"] - marks.get("dequantizing", marks["training"]), 1),
        "export_s": round(ended - marks["converting"], 2),
        "tune_total_s": round(ended - started, 1),
        "adapter_gguf_bytes": sizes["model"],
        "adapter_peft_bytes": sizes["peft"],
        "cpu": cpu_name(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-len", type=int, default=128)
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--home", type=Path, default=None, help="OWL_HOME (default: a temp one)")
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
