"""How long checking a model signature takes, against one sha256 pass over the same bytes.

owl checks a model.sig with the digests its pull computes anyway, so the check should cost
one hashing pass plus the signature itself (target: at most 1.1x a plain sha256 pass).
Each folder is signed once with a fresh elliptic-curve key (model-signing's key mode), then,
alternating, `--runs` times each:
- sha256: hashlib over every file, the floor;
- owl: owl.signatures.verify_folder (each file hashed once, then the signature checked);
- model_signing: model-signing's own verify, which hashes the folder itself, for scale.
Folders: the bundled model (~100 MB) and a 1 GB folder of four 256 MiB files written for
real. The page cache is warm for all three (each folder is read once before timing), so
the figures compare hashing and checking, not the disk. Medians reported.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/signature.py [--runs 5] [--gib 1]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import EMBEDDED, load_average, log, print_result
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import verifying

from owl.pull.sources.package import locate
from owl.signatures import Trust, verify_folder
from owl.signatures.crypto import sign_folder
from owl.store.ref import parse_ref

CHUNK = 1 << 20


def sha256_pass(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name != "model.sig":
            hasher = hashlib.sha256()
            with path.open("rb") as handle:
                while block := handle.read(CHUNK):
                    hasher.update(block)


def write_keys(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = folder / "key.pem", folder / "key.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def time_folder(folder: Path, public: Path, runs: int) -> dict:
    trust = Trust(public_key=public)
    ways: dict[str, Callable[[], object]] = {
        "sha256": lambda: sha256_pass(folder),
        "owl": lambda: verify_folder(folder, trust=trust),
        "model_signing": lambda: (
            verifying.Config()
            .use_elliptic_key_verifier(public_key=public)
            .verify(folder, folder / "model.sig")
        ),
    }
    sha256_pass(folder)  # warm the page cache for every way alike
    times: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(runs):
        for way, run in ways.items():
            started = time.perf_counter()
            run()
            times[way].append(time.perf_counter() - started)
    medians = {way: statistics.median(values) for way, values in times.items()}
    size = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    return {
        "bytes": size,
        **{f"{way}_s": round(value, 3) for way, value in medians.items()},
        "owl_over_sha256": round(medians["owl"] / medians["sha256"], 3),
        "model_signing_over_sha256": round(medians["model_signing"] / medians["sha256"], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--gib", type=float, default=1.0)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = load_average()
    results = {}
    with tempfile.TemporaryDirectory(prefix="owl-bench-signature-") as tmp:
        base = Path(tmp)
        private, public = write_keys(base)
        bundled = base / "bundled"
        bundled.mkdir()
        shutil.copyfile(locate(parse_ref(EMBEDDED)), bundled / "model.gguf")
        big = base / "big"
        big.mkdir()
        part = int(args.gib * (1 << 30)) // 4
        for index in range(4):
            with (big / f"model-{index:05d}-of-00004.safetensors").open("wb") as handle:
                for _ in range(part // (64 << 20)):
                    handle.write(os.urandom(64 << 20))
                handle.write(os.urandom(part % (64 << 20)))
        for label, folder in (("bundled", bundled), ("folder_1gb", big)):
            sign_folder(folder, private_key=private)
            results[label] = time_folder(folder, public, args.runs)
            log(f"{label}: {results[label]}")
    print_result(
        "signature", {"runs": args.runs, **results}, started=started, load_before=load_before
    )


if __name__ == "__main__":
    main()
