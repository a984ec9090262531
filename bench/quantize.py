"""How long `owl quantize` takes, and what it makes: the bundled SmolLM2-135M to each type.

The types are those that need no importance matrix (the issue's list less IQ4_XS). For each:
the seconds owl.quantize.quantize takes (llama.cpp's quantizer, the output check and hash,
the scan, the manifest), the output's size and bits per weight (size × 8 / parameters),
and the tensor types llama.cpp chose. The input is the bundled Q4_1 file, so every result is
a requantization; SmolLM2's 576-wide rows do not divide into k-quants' 256-wide blocks, so
most of its tensors fall back to legacy types (see tensor_types), which makes its k-quant
files larger than the nominal bits suggest.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/quantize.py [--types Q8_0,Q4_K_M] [--threads N] [--home DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from common import cpu_name, load_average, run_and_print

TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K")


def log(message: str) -> None:
    print(f"[quantize] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, home: Path) -> dict:
    import llama_cpp

    from owl.config import load_settings
    from owl.pull import open_store, resolve
    from owl.quantize import find_type, quantize

    settings = load_settings(home=home, threads=args.threads)
    store = open_store(settings)
    parent = resolve("smollm2", store=store, settings=settings)
    parameters = parent.info["parameters"]
    load_before = load_average()
    results = {}
    for name in args.types:
        kind = find_type(name)
        started = time.perf_counter()
        manifest = quantize(parent, store=store, settings=settings, qtype=kind.name)
        seconds = time.perf_counter() - started
        results[kind.name] = {
            "seconds": round(seconds, 2),
            "size_bytes": manifest.size,
            "bits_per_weight": round(manifest.size * 8 / parameters, 3),
            "nominal_bits": kind.bits,
            "tensor_types": manifest.info["quantize"]["tensor_types"],
        }
        log(f"{kind.name}: {results[kind.name]}")
        store.remove(manifest.model_name)  # keep the temp home small
    return {
        "bench": "quantize",
        "model": parent.display_name,
        "source_type": parent.info.get("quantization"),
        "source_size_bytes": parent.size,
        "source_bits_per_weight": round(parent.size * 8 / parameters, 3),
        "parameters": parameters,
        "types": results,
        "threads": args.threads,
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "load_average": {"before": load_before, "after": load_average()},
        "llama_cpp_python": llama_cpp.__version__,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--types",
        type=lambda text: [part.strip() for part in text.split(",") if part.strip()],
        default=list(TYPES),
        help="comma-separated types (default: %(default)s)",
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--home", type=Path, help="OWL_HOME to use (default: a temporary one)")
    args = parser.parse_args()
    run_and_print(run, args)


if __name__ == "__main__":
    main()
