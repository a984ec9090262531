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
import logging
import tempfile
from pathlib import Path

import numpy as np

from owl.config import Settings
from owl.errors import EvalError, QuantizationError
from owl.evals.scorer import plain_tokens, vocab_bos
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
    with _Calibrator(model, ctx=ctx, threads=threads, collector=collector) as calibrator:
        tokens = calibrator.tokenize(content)
        try:
            pieces = cut_chunks(tokens, ctx=ctx, bos=calibrator.bos, source=text.name)
        except EvalError as err:
            raise QuantizationError(
                f"cannot calibrate on {text.name}: {err}; --calibrate-ctx sets the context"
            ) from err
        pieces = pieces[:chunks] if chunks else pieces
        for piece in pieces:
            calibrator.decode(piece)
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


class _Calibrator:
    """A llama.cpp context for `ctx` tokens whose graph reports to `collector`."""

    def __init__(self, path: Path, *, ctx: int, threads: int, collector: Collector) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self._collector = collector
        self.name = path.name
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        llama_cpp.llama_backend_init()
        self._model = llama_cpp.llama_model_load_from_file(
            str(path).encode(), llama_cpp.llama_model_default_params()
        )
        if not self._model:
            raise QuantizationError(
                f"llama.cpp could not load {path.name} to calibrate it: the file may be "
                "damaged or of an architecture this llama.cpp does not support; check it "
                "with `owl show`"
            )
        self._ctx = self._batch = None
        try:
            self._vocab = llama_cpp.llama_model_get_vocab(self._model)
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = params.n_batch = ctx
            params.n_ubatch = min(ctx, 512)  # llama.cpp's default micro-batch, as llama-imatrix
            params.n_seq_max = 1
            params.n_threads = params.n_threads_batch = threads
            params.no_perf = True
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO  # llama-imatrix's
            params.cb_eval = collector.callback
            params.cb_eval_user_data = None
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise QuantizationError(
                    f"llama.cpp could not make a context of {ctx} tokens for {path.name}; "
                    "try a smaller --calibrate-ctx"
                )
            self._batch = llama_cpp.llama_batch_init(ctx, 0, 1)
        except BaseException:
            self.close()
            raise

    @property
    def bos(self) -> int | None:
        return vocab_bos(self._llama_cpp, self._vocab)

    def tokenize(self, text: str) -> list[int]:
        """llama-imatrix's tokens: BOS if the vocabulary asks, special tokens as text."""
        return plain_tokens(
            self._llama_cpp, self._vocab, text, name=self.name, what="the calibration text"
        )

    def decode(self, tokens: list[int]) -> None:
        """One chunk, a fresh sequence, every token's logits asked for (as llama-imatrix)."""
        llama_cpp = self._llama_cpp
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        batch = self._batch
        batch.n_tokens = len(tokens)
        for index, token in enumerate(tokens):
            batch.token[index] = token
            batch.pos[index] = index
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = 0
            batch.logits[index] = True
        code = llama_cpp.llama_decode(self._ctx, batch)
        if self._collector.error is not None:
            error = self._collector.error
            if isinstance(error, QuantizationError | KeyboardInterrupt):
                raise error
            raise QuantizationError(
                f"owl failed to read {self.name}'s activations: {type(error).__name__}: {error}"
            ) from error
        if code != 0:
            raise QuantizationError(
                f"llama.cpp failed to evaluate a calibration chunk of {self.name} (code {code})"
            )

    def close(self) -> None:
        llama_cpp = self._llama_cpp
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> _Calibrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
