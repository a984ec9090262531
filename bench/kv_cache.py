"""What a quantized KV cache saves and costs (--cache-type-k/-v): bytes per cached token and
the KL divergence from the f16 cache on the start of Hamlet (the text bench/quantize_report.py
measures quantizations on), the same model on both sides, so the cache is all that differs.

    .venv/bin/python bench/kv_cache.py [--chars 30000] [--ctx 512] [--threads 2]

Prints one JSON line; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from common import cpu_name, load_average, log, run_and_print
from quantize_report import shakespeare

TYPES = [("q8_0", "q8_0"), ("q8_0", "f16"), ("q4_0", "q4_0")]


def run(args: argparse.Namespace, home: Path) -> dict:
    from owl import engine
    from owl.config import Settings
    from owl.engine.memory import cache_types_of, kv_cache_bytes
    from owl.evals.kld import kl_divergence
    from owl.formats import inspect
    from owl.pull import open_store, pull

    load_before = load_average()
    text = shakespeare(home, args.chars)
    results = {}
    for k, v in [("f16", "f16"), *TYPES]:
        settings = Settings(
            home=home, ctx=args.ctx, threads=args.threads, cache_type_k=k, cache_type_v=v
        )
        store = open_store(settings)
        manifest = pull("smollm2", store=store, settings=settings)
        metadata = inspect(store.weights_path(manifest)).metadata
        per_token = kv_cache_bytes(metadata, ctx=1, cache_types=cache_types_of(settings))
        model = engine.load(manifest, store=store, settings=settings)
        try:  # the bytes llama.cpp holds for 256 cached tokens, divided out
            tokens = model.text_tokens("word " * 400)[:256]
            list(model.generate(tokens, model.sampling(temperature=0.0, max_tokens=1)))
            held = model.backend.cached_bytes(0)
        finally:
            model.close()
        entry = {"bytes_per_token": per_token, "held_for_256_tokens": held}
        if (k, v) != ("f16", "f16"):
            log(f"[kv_cache] KL divergence of K {k} / V {v} from f16 …")
            started = time.perf_counter()
            measured = kl_divergence(
                "smollm2",
                reference="smollm2",
                text=text,
                ctx=args.ctx,
                store=store,
                settings=settings,
            )
            entry |= {
                "kld_mean": round(measured.kld_mean, 6),
                "kld_stderr": round(measured.kld_stderr, 6),
                "kld_p99": round(measured.kld_p99, 5),
                "top1_agreement": round(measured.top1_agreement, 4),
                "perplexity": round(measured.perplexity, 3),
                "perplexity_f16": round(measured.reference_perplexity, 3),
                "seconds": round(time.perf_counter() - started, 1),
            }
        results[f"k_{k}_v_{v}"] = entry
    f16 = results["k_f16_v_f16"]["bytes_per_token"]
    for entry in results.values():
        entry["memory_ratio_to_f16"] = round(entry["bytes_per_token"] / f16, 4)
    return {
        "bench": "kv_cache",
        "model": "smollm2 (SmolLM2-135M-Instruct Q4_1)",
        "text": f"hamlet, first {args.chars} characters",
        "ctx": args.ctx,
        "types": results,
        "cpu": cpu_name(),
        "load_average": {"before": load_before, "after": load_average()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=30000)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--home", type=Path, default=None)
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
