"""Perplexity by llama-perplexity's method (llama.cpp tools/perplexity/perplexity.cpp).

The whole text is tokenized with the model's own tokenizer and cut into non-overlapping
chunks of `ctx` tokens (the remainder dropped); each chunk starts with BOS when the
vocabulary asks for one; only the second half of each chunk is scored, so that every
scored token has at least ctx/2 tokens before it. Perplexity is exp(mean NLL), and its
error is llama-perplexity's: sqrt(var(NLL) / (n - 1)) * PPL.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from owl.config import Settings
from owl.engine.llama.scorer import Scorer
from owl.evals.scorer import open_scorer
from owl.evals.text import chunks, first_scored, read_text
from owl.store import Manifest, Store

Progress = Callable[[int, int], None]  # (chunks done, chunks in all)

_ROWS = 64  # log-softmax this many positions at a time: float64 rows of a big vocabulary add up


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """log p of each row of `logits`, in float64 (max-subtracted, so it cannot overflow)."""
    values = logits.astype(np.float64)
    values -= values.max(axis=-1, keepdims=True)
    values -= np.log(np.exp(values).sum(axis=-1, keepdims=True))
    return values


def row_blocks(rows: int) -> Iterator[slice]:
    """Slices of at most _ROWS rows covering `rows`."""
    for start in range(0, rows, _ROWS):
        yield slice(start, min(start + _ROWS, rows))


def token_nll(logits: np.ndarray, targets: Sequence[int]) -> np.ndarray:
    """-log p(target) for each row of `logits` (rows × vocabulary), in float64."""
    targets = np.asarray(targets)
    out = np.empty(len(targets), dtype=np.float64)
    for block in row_blocks(len(targets)):
        logp = log_softmax(logits[block])
        out[block] = -logp[np.arange(logp.shape[0]), targets[block]]
    return out


def json_safe(value: Any) -> Any:
    """`value` with NaN and infinities as None, in nested dicts and lists too: JSON has no
    numbers for them (a report.json stays strict JSON; the stderr of one question is NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


@dataclass
class NllStats:
    """Running sums of NLL and NLL², as llama-perplexity keeps them."""

    count: int = 0
    total: float = 0.0
    total2: float = 0.0

    def add(self, nll: np.ndarray) -> None:
        self.count += int(nll.size)
        self.total += float(nll.sum())
        self.total2 += float(np.square(nll).sum())

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def perplexity(self) -> float:
        return math.exp(self.mean)

    @property
    def stderr(self) -> float:
        """The error of the perplexity: llama-perplexity's `PPL = X +/- Y`, Y."""
        if self.count < 2:
            return math.nan
        variance = self.total2 / self.count - self.mean**2
        if variance <= 0:
            return 0.0
        return math.sqrt(variance / (self.count - 1)) * self.perplexity


@dataclass(frozen=True)
class PerplexityResult:
    perplexity: float
    stderr: float  # of the perplexity, as llama-perplexity reports it
    nll_mean: float  # ln(perplexity)
    tokens: int  # tokens scored
    chunks: int
    ctx: int
    model: str
    text: str
    text_tokens: int  # tokens of the whole text, the unscored and the dropped included
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def score_chunks(
    scorer: Scorer,
    cut: list[list[int]],
    *,
    keep: bool = False,
    progress: Progress | None = None,
) -> Iterator[tuple[np.ndarray, list[int]]]:
    """For each chunk, the logits of its scored positions and the tokens they predict.

    Unless `keep`, the logits are llama.cpp's buffer, overwritten by the next chunk's.
    """
    ctx = len(cut[0])
    first = first_scored(ctx)
    for index, chunk in enumerate(cut):
        logits = scorer.logits(chunk, first=first, copy=keep)
        # The last position predicts past the chunk: asked for (as llama-perplexity does),
        # not scored.
        yield logits[:-1], chunk[first + 1 :]
        if progress is not None:
            progress(index + 1, len(cut))


def perplexity_of(
    scorer: Scorer, text: str, *, ctx: int, source: str, progress: Progress | None = None
) -> tuple[NllStats, int, int]:
    """NLL statistics of `text` under a loaded model: (stats, chunks, text tokens)."""
    tokens = scorer.tokenize(text)
    cut = chunks(tokens, ctx=ctx, bos=scorer.bos, source=source)
    stats = NllStats()
    for logits, targets in score_chunks(scorer, cut, progress=progress):
        stats.add(token_nll(logits, targets))
    return stats, len(cut), len(tokens)


def perplexity(
    model: str | Manifest,
    *,
    text: Path | str,
    ctx: int = 512,
    store: Store,
    settings: Settings,
    allow_unsafe: bool = False,
    progress: Progress | None = None,
) -> PerplexityResult:
    """The perplexity of a stored model on a UTF-8 text file, by llama-perplexity's method.

    Runs on the calling thread (all decodes from one thread). `progress(done, total)` is
    called after each chunk. EvalError when the text does not fill one chunk of `ctx`.
    """
    text = Path(text)
    content = read_text(text)
    started = time.perf_counter()
    with open_scorer(
        model, n_ctx=ctx, store=store, settings=settings, allow_unsafe=allow_unsafe
    ) as scorer:
        stats, count, text_tokens = perplexity_of(
            scorer, content, ctx=ctx, source=str(text), progress=progress
        )
        name = scorer.name
    return PerplexityResult(
        perplexity=stats.perplexity,
        stderr=stats.stderr,
        nll_mean=stats.mean,
        tokens=stats.count,
        chunks=count,
        ctx=ctx,
        model=name,
        text=str(text),
        text_tokens=text_tokens,
        seconds=round(time.perf_counter() - started, 3),
    )
