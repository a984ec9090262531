"""Decode speed of SmolLM2-135M with and without a LoRA adapter applied by llama.cpp.

The base is the bundled SmolLM2-135M-Instruct (Q4_1). The adapter is `--adapter NAME` from
the store in --home (e.g. one `owl tune` made), else one made here: a PEFT LoRA of rank
`--rank` on every attention and MLP projection of the dequantized base (lora_B random, as
if trained), exported by owl tune's export (f16 GGUF LoRA). Both run in owl's engine, the
same raw prompt, greedy, one thread count; the two alternate within each round after a
warm-up, so that a machine getting busier affects them alike.

Decode rate = (tokens - 1) / (first token → last token). Also: the adapter's GGUF size and
its load time on top of the base. Prints one JSON line; progress on stderr. Never a timed
assert.

    .venv/bin/python bench/adapters.py [--max-tokens 96] [--rounds 3] [--rank 8]
                                       [--adapter NAME] [--home DIR]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from common import cpu_name, load_average, run_and_print

PROMPT = (
    "The history of the Roman Empire spans more than a thousand years. "
    "In this chapter we follow it from the founding of the city to the fall of "
    "Constantinople. It began"
)
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(message: str) -> None:
    print(f"[adapters] {message}", file=sys.stderr, flush=True)


def make_adapter(base, *, rank: int, store, settings):  # noqa: ANN001, ANN201
    """A rank-`rank` LoRA of SmolLM2 with random lora_B, stored as 'bench-lora'."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from owl.store import ModelName
    from owl.tune.base import base_folder
    from owl.tune.export import export_adapter

    folder = base_folder(base, store=store, settings=settings, status=log)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, parameter in peft.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.01)
    out = settings.home / "bench-lora-peft"
    shutil.rmtree(out, ignore_errors=True)
    peft.save_pretrained(out)
    return export_adapter(
        out,
        base=base,
        base_folder=folder,
        name=ModelName("bench-lora", "latest"),
        store=store,
        settings=settings,
        info={},
        replace=True,
    )


def decode_rate(model, max_tokens: int) -> float:  # noqa: ANN001
    from owl.engine import SamplingParams

    first = last = None
    usage = None
    for delta in model.complete(PROMPT, SamplingParams(temperature=0, max_tokens=max_tokens)):
        now = time.perf_counter()
        if delta.text:
            first = first if first is not None else now
            last = now
        usage = delta.usage or usage
    assert first is not None and last is not None and usage is not None
    return (usage.completion_tokens - 1) / (last - first)


def run(args: argparse.Namespace, home: Path) -> dict:
    from owl import engine
    from owl.config import load_settings
    from owl.pull import open_store, pull, resolve

    settings = load_settings(home=home, ctx=512)
    store = open_store(settings)
    base = pull("smollm2", store=store, settings=settings)
    started = time.perf_counter()
    if args.adapter:
        adapter = resolve(args.adapter, store=store, settings=settings)
    else:
        adapter = make_adapter(base, rank=args.rank, store=store, settings=settings)
    made_s = time.perf_counter() - started
    started = time.perf_counter()
    plain = engine.load(base, store=store, settings=settings)
    base_load_s = time.perf_counter() - started
    started = time.perf_counter()
    tuned = engine.load(base, store=store, settings=settings, adapters=[adapter])
    adapter_load_s = time.perf_counter() - started
    rates: dict[str, list[float]] = {"base": [], "adapter": []}
    try:
        for round_ in range(args.rounds + 1):  # round 0 warms up
            for way, model in (("base", plain), ("adapter", tuned)):
                rate = decode_rate(model, args.max_tokens)
                if round_:
                    rates[way].append(rate)
            log(f"round {round_}: {rates}")
    finally:
        plain.close()
        tuned.close()
    base_tps = statistics.median(rates["base"])
    adapter_tps = statistics.median(rates["adapter"])
    return {
        "bench": "adapters",
        "model": base.display_name,
        "adapter": adapter.display_name,
        "adapter_gguf_bytes": adapter.weights.size,
        "rank": None if args.adapter else args.rank,
        "made_s": round(made_s, 1),
        "base_load_s": round(base_load_s, 2),
        "adapter_load_s": round(adapter_load_s, 2),
        "max_tokens": args.max_tokens,
        "base_decode_tps": round(base_tps, 1),
        "adapter_decode_tps": round(adapter_tps, 1),
        "adapter_vs_base": round(adapter_tps / base_tps, 3),
        "threads": settings.threads,
        "cpu": cpu_name(),
        "load": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--adapter", help="an adapter in --home's store (default: make one)")
    parser.add_argument("--home", type=Path, help="OWL_HOME to use (default: a temp one)")
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
