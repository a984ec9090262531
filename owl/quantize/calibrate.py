"""owl's own importance matrix: llama-imatrix's method, through llama-cpp-python.

The model reads the calibration text in chunks of `ctx` tokens, as `llama-imatrix -c CTX
-b CTX` does: the text's tokens (BOS first when the vocabulary wants one, no special
tokens parsed), cut into non-overlapping chunks with the remainder dropped, each chunk's
first token replaced by BOS, each chunk a fresh sequence with logits for every token (the
last layer then sees every row, as in llama-imatrix). The collector (activations.py) sums
the squares of each weight's inputs; the result is the existing `Imatrix` (sums over counts,
as llama-quantize normalises them) and a llama-imatrix GGUF file that llama.cpp's tools and
`owl quantize --imatrix` read back.

Calibrate on the highest-precision file of the model there is (f16/bf16/f32, else Q8_0), as
llama-imatrix recommends: the activations of an already-quantized model carry its errors.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import numpy as np

from owl.config import Settings
from owl.engine.llama.scorer import Scorer
from owl.errors import EvalError, QuantizationError
from owl.evals.text import chunks as cut_chunks
from owl.evals.text import read_text
from owl.quantize.activations import Collector, Stats
from owl.quantize.imatrix import Imatrix, write_imatrix
from owl.store import Manifest, Store
from owl.store.blobs import sha256_file

DEFAULT_CTX = 512
MIN_CTX = 16  # llama-imatrix ignores micro-batches under 16 tokens: nothing would be collected


def calibrate(
    manifest: Manifest,
    *,
    store: Store,
    settings: Settings,
    text: Path,
    ctx: int = DEFAULT_CTX,
    chunks: int | None = None,
    out: Path | None = None,
) -> Imatrix:
    """The importance matrix of the stored GGUF `manifest` on the calibration `text`.

    The model must pass the scan gate. `chunks` caps the chunks of `ctx` tokens read (all
    the text's by default). The llama-imatrix GGUF goes to `out` when given; either way its
    digest is the Imatrix's. QuantizationError for a text that is empty, not UTF-8 or too
    short for one chunk, or a model llama.cpp cannot load.
    """
    from owl.scan.policy import require_loadable

    if manifest.format != "gguf":
        raise QuantizationError(
            f"model '{manifest.display_name}' is {manifest.format}; owl calibrates GGUF "
            f"models: `owl convert {manifest.display_name}` first"
        )
    manifest = require_loadable(manifest, store=store, by="owl quantize --calibrate")
    return compute_imatrix(
        store.weights_path(manifest),
        text=text,
        ctx=ctx,
        chunks=chunks,
        threads=settings.threads,
        out=out,
        name=manifest.name,
    )


def compute_imatrix(
    model: Path,
    *,
    text: Path,
    ctx: int = DEFAULT_CTX,
    chunks: int | None = None,
    threads: int = 1,
    out: Path | None = None,
    name: str | None = None,
) -> Imatrix:
    """`calibrate` on a GGUF file; `name` names the matrix file when there is no `out`."""
    if ctx < MIN_CTX:
        raise QuantizationError(
            f"--calibrate-ctx must be at least {MIN_CTX} tokens (llama-imatrix skips smaller "
            f"batches), not {ctx}"
        )
    if chunks is not None and chunks < 1:
        raise QuantizationError(f"--calibrate-chunks must be at least 1, not {chunks}")
    try:
        content = read_text(text)
    except (EvalError, OSError) as err:
        raise QuantizationError(f"cannot calibrate on {text.name}: {err}") from err
    text_digest = "sha256:" + hashlib.sha256(content.encode("utf-8")).hexdigest()
    collector = Collector()
    with Scorer(
        model,
        n_ctx=ctx,
        threads=threads,
        callback=collector.callback,
        error=QuantizationError,
        hint="try a smaller --calibrate-ctx",
    ) as scorer:
        tokens = scorer.vocab.plain_tokens(
            content, name=scorer.name, what="the calibration text", error=QuantizationError
        )
        try:
            pieces = cut_chunks(tokens, ctx=ctx, bos=scorer.bos, source=text.name)
        except EvalError as err:
            raise QuantizationError(
                f"cannot calibrate on {text.name}: {err}; --calibrate-ctx sets the context"
            ) from err
        pieces = pieces[:chunks] if chunks else pieces
        for piece in pieces:
            _read_chunk(scorer, collector, piece)
    if not collector.stats:
        raise QuantizationError(
            f"llama.cpp multiplied no layer weight of {model.name} while reading {text.name}; "
            "owl cannot compute an importance matrix for this model"
        )
    calibration = {
        "text": text.name,
        "text_digest": text_digest,
        "tokens": len(tokens),
        "chunks": len(pieces),
        "ctx": ctx,
    }
    return _finish(collector.stats, calibration, out=out, name=name or model.stem)


def _finish(
    stats: dict[str, Stats], calibration: dict[str, object], *, out: Path | None, name: str
) -> Imatrix:
    """Write the llama-imatrix file (to `out`, or a temp file for its digest)."""
    sums = {key: entry.sums.astype(np.float32) for key, entry in sorted(stats.items())}
    counts = {key: entry.counts.astype(np.float32) for key, entry in sorted(stats.items())}
    datasets = (str(calibration["text"]),)
    n_chunks = int(calibration["chunks"])  # type: ignore[call-overload]
    ctx = int(calibration["ctx"])  # type: ignore[call-overload]
    if out is not None:
        write_imatrix(out, sums, counts, datasets=datasets, chunks=n_chunks, chunk_size=ctx)
        filename, digest = out.name, sha256_file(out)
    else:
        with tempfile.TemporaryDirectory(prefix="owl-imatrix-") as folder:
            path = Path(folder) / f"{name}.imatrix.gguf"
            write_imatrix(path, sums, counts, datasets=datasets, chunks=n_chunks, chunk_size=ctx)
            filename, digest = path.name, sha256_file(path)
    values = {}
    for key in sums:
        seen = counts[key][:, None] > 0
        rows = np.where(seen, sums[key] / np.where(seen, counts[key][:, None], 1), 1.0)
        values[key] = rows.reshape(-1).astype(np.float32)
    return Imatrix(filename, digest, values, datasets, n_chunks, calibration=dict(calibration))


def _read_chunk(scorer: Scorer, collector: Collector, tokens: list[int]) -> None:
    """One chunk, a fresh sequence, every token's logits asked for (as llama-imatrix), so
    that the last layer sees every row."""
    code = scorer.evaluate(tokens, first=0)
    if collector.error is not None:
        error = collector.error
        if isinstance(error, QuantizationError | KeyboardInterrupt):
            raise error
        raise QuantizationError(
            f"owl failed to read {scorer.name}'s activations: {type(error).__name__}: {error}"
        ) from error
    if code != 0:
        raise QuantizationError(
            f"llama.cpp failed to evaluate a calibration chunk of {scorer.name} (code {code})"
        )
