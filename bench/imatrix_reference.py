"""owl's importance matrix against llama.cpp's own `llama-imatrix`: same model, text, ctx, chunks.

`llama-imatrix` is built once from the llama.cpp that the installed llama-cpp-python vendors
(its sdist, as in perplexity_reference.py, with the same instruction sets) and cached under
~/.cache/owl-bench/ (OWL_BENCH_CACHE). Both read the bundled SmolLM2 GGUF; llama-imatrix runs
with `-c CTX -b CTX --chunks N`, so that a chunk is one batch as in owl. Both files are read
back with owl's load_imatrix (sums over counts) and compared tensor by tensor: the largest
relative difference of any column, |owl - llama| / max(|llama|, 1e-6 × the tensor's mean).

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/imatrix_reference.py [--text FILE] [--ctx 128] [--chunks 8]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from common import cpu_name, load_average, run_and_print
from perplexity_reference import CMAKE_FLAGS, EMBEDDED, cache_dir, llama_cpp_version, log, sdist

from owl.pull.sources.package import locate
from owl.quantize.calibrate import compute_imatrix
from owl.quantize.imatrix import load_imatrix
from owl.store.ref import parse_ref


def llama_imatrix_binary(cache: Path) -> Path:
    """The path of llama-imatrix, built once from the vendored llama.cpp."""
    version = llama_cpp_version()
    root = cache / f"llama.cpp-{version}"
    binary = root / "build" / "bin" / "llama-imatrix"
    if binary.is_file():
        return binary
    if not (root / "CMakeLists.txt").is_file():
        archive = sdist(version, cache)
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        log(f"extracting llama.cpp from {archive.name}")
        with tarfile.open(archive) as tar:
            members = []
            for member in tar.getmembers():
                if member.name.startswith(prefix) and member.name != prefix:
                    member.name = member.name[len(prefix) :]
                    members.append(member)
            tar.extractall(root, members=members, filter="data")
    log("building llama-imatrix (a few minutes, once)")
    subprocess.run(
        ["cmake", "-S", str(root), "-B", str(root / "build"), *CMAKE_FLAGS],
        check=True,
        stdout=sys.stderr,
    )
    jobs = str(os.cpu_count() or 2)
    subprocess.run(
        ["cmake", "--build", str(root / "build"), "--target", "llama-imatrix", "-j", jobs],
        check=True,
        stdout=sys.stderr,
    )
    return binary


def run_llama_imatrix(
    binary: Path, model: Path, text: Path, out: Path, *, ctx: int, chunks: int, threads: int
) -> float:
    command = [binary, "-m", model, "-f", text, "-o", out, "-c", ctx, "-b", ctx]
    command += ["--chunks", chunks, "-t", threads]
    started = time.perf_counter()
    done = subprocess.run([str(part) for part in command], capture_output=True, text=True)
    if done.returncode != 0 or not out.is_file():
        raise SystemExit(
            f"llama-imatrix failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}"
        )
    return time.perf_counter() - started


def compare(ours: dict[str, np.ndarray], theirs: dict[str, np.ndarray]) -> dict:
    worst, worst_name, differences = 0.0, None, []
    for name, reference in theirs.items():
        mine = ours[name]
        floor = max(float(np.abs(reference).mean()) * 1e-6, 1e-30)
        relative = np.abs(mine - reference) / np.maximum(np.abs(reference), floor)
        differences.append(float(relative.max()))
        if differences[-1] > worst:
            worst, worst_name = differences[-1], name
    return {
        "tensors_llama": len(theirs),
        "tensors_owl": len(ours),
        "same_tensors": set(ours) == set(theirs),
        "same_shapes": all(ours[n].shape == theirs[n].shape for n in theirs if n in ours),
        "max_relative_difference": worst,
        "median_of_tensor_max_relative_difference": float(np.median(differences)),
        "worst_tensor": worst_name,
    }


def run(args: argparse.Namespace, home: Path) -> dict:
    text = args.text.expanduser().resolve()
    binary = llama_imatrix_binary(cache_dir())
    model = locate(parse_ref(EMBEDDED))
    with tempfile.TemporaryDirectory(prefix="owl-bench-imatrix-") as tmp:
        reference_file, owl_file = Path(tmp) / "llama.imatrix.gguf", Path(tmp) / "owl.gguf"
        log(f"llama-imatrix on {text.name}, ctx {args.ctx}, {args.chunks} chunks")
        llama_seconds = run_llama_imatrix(
            binary, model, text, reference_file, ctx=args.ctx, chunks=args.chunks,
            threads=args.threads,
        )  # fmt: skip
        log("owl's compute_imatrix, same settings")
        started = time.perf_counter()
        ours = compute_imatrix(
            model, text=text, ctx=args.ctx, chunks=args.chunks, threads=args.threads, out=owl_file
        )
        owl_seconds = time.perf_counter() - started
        theirs = load_imatrix(reference_file)
        reloaded = load_imatrix(owl_file)
    return {
        "bench": "imatrix_reference",
        "model": model.name,
        "text": str(text),
        "ctx": args.ctx,
        "chunks_owl": ours.chunks,
        "chunks_llama": theirs.chunks,
        **compare(reloaded.values, theirs.values),
        "owl_seconds": round(owl_seconds, 2),
        "llama_seconds": round(llama_seconds, 2),
        "llama_cpp_python": llama_cpp_version(),
        "threads": args.threads,
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "load_average": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=Path("/usr/share/common-licenses/GPL-3"))
    parser.add_argument("--ctx", type=int, default=128)
    parser.add_argument("--chunks", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--home", type=Path, default=None, help="OWL_HOME (default: a temp one)")
    run_and_print(run, parser.parse_args())


if __name__ == "__main__":
    main()
