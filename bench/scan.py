"""How long `owl scan` takes: the bundled model (~100 MB) and 1 GB files of three formats.

A scan must read headers, metadata and pickle opcodes, never the tensor bytes: its time
should not grow with the size of the weights. Each file is scanned `--runs` times (the
median is reported) and, for scale, hashed once with sha256, which does read every byte.
The 1 GB files are written for real (not sparse) into a temporary folder:
- GGUF: the bundled model's metadata and vocabulary plus one 1 GB tensor;
- safetensors: one 1 GB float32 tensor;
- torch zip (torch.save of a 1 GB state dict of 64 tensors), if torch is installed.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/scan.py [--runs 5] [--gib 1]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

from common import EMBEDDED, load_average, log, print_result

from owl.pull.sources.package import locate
from owl.scan import scan_file
from owl.store.ref import parse_ref

CHUNK = 64 << 20


def sha256_seconds(path: Path) -> float:
    started = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return time.perf_counter() - started


def time_scan(path: Path, runs: int) -> dict:
    times, report = [], None
    for _ in range(runs):
        started = time.perf_counter()
        report = scan_file(path)
        times.append(time.perf_counter() - started)
    assert report is not None
    return {
        "size_bytes": path.stat().st_size,
        # The first scan of a process also imports the checker (gguf, jinja2, numpy, …).
        "scan_ms_first": round(times[0] * 1000, 2),
        "scan_ms_median": round(statistics.median(times) * 1000, 2),
        "scan_ms_min": round(min(times) * 1000, 2),
        "status": report.status,
        "findings": len(report.findings),
        "sha256_s": round(sha256_seconds(path), 3),
    }


def big_gguf(folder: Path, size: int, bundled: Path) -> Path:
    """The bundled model's metadata with a single big tensor, written by gguf itself."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(bundled, "r")
    path = folder / "big.gguf"
    writer = gguf.GGUFWriter(path, arch="llama")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub_type)
    rows = size // (4 * 4096)
    writer.add_tensor_info("big.weight", (rows, 4096), np.dtype(np.float32), rows * 4096 * 4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    # The tensor bytes are appended in blocks: gguf's writer wants the whole array at once.
    block = np.ones((1024, 4096), dtype=np.float32).tobytes()
    with path.open("ab") as handle:
        handle.write(b"\0" * (-handle.tell() % 32))  # GGUF's default alignment
        left = rows * 4096 * 4
        while left:
            handle.write(block[: min(len(block), left)])
            left -= min(len(block), left)
    return path


def big_safetensors(folder: Path, size: int) -> Path:
    path = folder / "big.safetensors"
    count = size // 4
    header = json.dumps({"big": {"dtype": "F32", "shape": [count], "data_offsets": [0, count * 4]}})
    header_bytes = header.encode() + b" " * (-len(header) % 8)
    block = b"\x01" * CHUNK
    with path.open("wb") as handle:
        handle.write(len(header_bytes).to_bytes(8, "little") + header_bytes)
        left = count * 4
        while left:
            handle.write(block[: min(CHUNK, left)])
            left -= min(CHUNK, left)
    return path


def big_torch(folder: Path, size: int) -> Path | None:
    try:
        import torch
    except ImportError:
        return None
    path = folder / "big.pt"
    per = size // 64 // 4
    torch.save({f"layer.{i}.weight": torch.ones(per) for i in range(64)}, path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    size = int(args.gib * (1 << 30))
    started = time.perf_counter()
    bundled = locate(parse_ref(EMBEDDED))
    load_before = load_average()
    results = {"bundled_gguf": time_scan(bundled, args.runs)}
    log(f"bundled: {results['bundled_gguf']}")
    with tempfile.TemporaryDirectory(prefix="owl-bench-scan-") as tmp:
        folder = Path(tmp)
        makers = {
            "gguf_1gb": lambda: big_gguf(folder, size, bundled),
            "safetensors_1gb": lambda: big_safetensors(folder, size),
            "torch_zip_1gb": lambda: big_torch(folder, size),
        }
        for label, make in makers.items():
            log(f"writing {label} …")
            path = make()
            if path is None:
                continue
            results[label] = time_scan(path, args.runs)
            log(f"{label}: {results[label]}")
            path.unlink()
    print_result("scan", {"runs": args.runs, **results}, started=started, load_before=load_before)


if __name__ == "__main__":
    main()
