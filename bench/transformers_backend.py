"""Load time and decode speed of owl's transformers backend, with llama.cpp beside it.

Three ways, one thread each, greedy, 64 tokens from the same prompt:
- `tiny_gpt_neox`: the tiny random-weight GPT-NeoX of tests/support/tiny_models.py (an
  architecture only the transformers backend runs), with SmolLM2's tokenizer;
- `smollm2_transformers`: the bundled SmolLM2-135M-Instruct Q4_1 GGUF dequantized by
  transformers to float32 and saved as safetensors, in the transformers backend;
- `smollm2_llamacpp`: the same GGUF in owl's llama.cpp backend.

load_s is the backend's constructor (torch and transformers are imported before timing);
decode rate = (tokens - 1) / (time from the first token to the last one), the best of
`--rounds` after a warm-up; first_token_ms is prompt evaluation plus the first draw.
Each way runs through owl's Model (`complete`, as `owl run` does), so EOG ends a way early
(see completion_tokens). `agreement_chars`: how many leading characters of greedy text the
float32 and the Q4_1 SmolLM2 share (Q4_1 weights are the same numbers, but llama.cpp
multiplies them against 8-bit-quantized activations).
Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/transformers_backend.py [--max-tokens 64] [--rounds 3] [--home DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from common import cpu_name, load_average, run_and_print
from convert import EMBEDDED, hf_folder

from owl.engine.sampling import SamplingParams
from owl.pull.sources.package import locate
from owl.store.ref import parse_ref

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for tests/support/tiny_models.py, the tiny model's builder

from tests.support.tiny_models import build_tiny_folder  # noqa: E402

PROMPT = (
    "<|im_start|>The history of the Roman Empire spans more than a thousand years. "
    "In this chapter we follow it from the founding of the city to the fall of "
    "Constantinople. It began"
)
N_CTX = 512


def log(message: str) -> None:
    print(f"[transformers_backend] {message}", file=sys.stderr, flush=True)


def measure(load, name: str, rounds: int, max_tokens: int) -> dict:  # noqa: ANN001 (a factory)
    from owl.engine.model import Model

    started = time.perf_counter()
    backend = load()
    load_s = time.perf_counter() - started
    model = Model(backend, name=name)
    params = SamplingParams(temperature=0, max_tokens=max_tokens)
    rates, firsts, text, tokens, finish = [], [], "", 0, None
    try:
        for round_index in range(rounds + 1):
            start = time.perf_counter()
            stamps, pieces = [], []
            for delta in model.complete(PROMPT, params):
                if delta.text:
                    stamps.append(time.perf_counter())
                    pieces.append(delta.text)
                if delta.usage is not None:
                    tokens, finish = delta.usage.completion_tokens, delta.finish_reason
            rate = (tokens - 1) / (stamps[-1] - stamps[0])
            label = " (warm-up)" if round_index == 0 else ""
            log(f"  round {round_index}{label}: {rate:.1f} tok/s, {tokens} tokens, {finish}")
            if round_index:
                rates.append(rate)
                firsts.append(stamps[0] - start)
            text = "".join(pieces)
    finally:
        model.close()
    return {
        "load_s": round(load_s, 2),
        "decode_tps": round(max(rates), 2),
        "decode_tps_per_round": [round(rate, 2) for rate in rates],
        "first_token_ms": round(min(firsts) * 1000, 1),
        "completion_tokens": tokens,
        "finish": finish,
        "text": text,
    }


def run(args: argparse.Namespace, home: Path) -> dict:
    import torch
    import transformers

    from owl.engine.llama.backend import LlamaCppBackend
    from owl.engine.transformers.backend import TransformersBackend

    threads = 1
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    smollm2 = work / "smollm2-hf"
    if not (smollm2 / "config.json").is_file():  # kept between runs with --home
        hf_folder(smollm2)
    tiny = build_tiny_folder("gpt_neox", work, smollm2)
    log(f"folders built in {time.perf_counter() - started:.1f}s")
    gguf = locate(parse_ref(EMBEDDED))
    ways = {
        "tiny_gpt_neox": lambda: TransformersBackend(tiny, n_ctx=N_CTX, threads=threads),
        "smollm2_transformers": lambda: TransformersBackend(smollm2, n_ctx=N_CTX, threads=threads),
        "smollm2_llamacpp": lambda: LlamaCppBackend(gguf, n_ctx=N_CTX, threads=threads),
    }
    load_before = load_average()
    results = {}
    for name, load in ways.items():
        log(name)
        results[name] = measure(load, name, args.rounds, args.max_tokens)
    load_after = load_average()
    ours = results["smollm2_transformers"].pop("text")
    theirs = results["smollm2_llamacpp"].pop("text")
    results["tiny_gpt_neox"].pop("text")
    pairs = enumerate(zip(ours, theirs, strict=False))
    agreement = next((index for index, (a, b) in pairs if a != b), min(len(ours), len(theirs)))
    speed = (
        results["smollm2_transformers"]["decode_tps"] / results["smollm2_llamacpp"]["decode_tps"]
    )
    return {
        "bench": "transformers_backend",
        "max_tokens": args.max_tokens,
        "rounds": args.rounds,
        **results,
        "smollm2_transformers_vs_llamacpp": round(speed, 3),
        "agreement_chars": agreement,
        "smollm2_texts": {"transformers": ours, "llamacpp": theirs},
        "n_ctx": N_CTX,
        "threads": threads,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": {"before": load_before, "after": load_after},
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--home", type=Path, help="folder to work in (default: a temporary one)")
    args = parser.parse_args()
    if args.max_tokens < 2 or args.rounds < 1:
        parser.error("--max-tokens must be at least 2 and --rounds at least 1")
    run_and_print(run, args)


if __name__ == "__main__":
    main()
