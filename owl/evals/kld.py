"""KL divergence of a model's next-token distributions from a reference's, on the same tokens.

The chunks and scored positions are perplexity's (owl/evals/perplexity.py), the tokens the
reference's. At each scored position KL(P_ref || P_model) = Σ p_ref (log p_ref − log p_model)
over the whole vocabulary, in float64 (llama-perplexity's --kl-divergence stores the
reference's log-probabilities in 16 bits and skips p_ref < e^-16; owl keeps them exact).
Top-1 agreement: the fraction of positions where both models' most likely tokens agree.

Both models stay loaded and take turns chunk by chunk, all on the calling thread: no
reference logits on disk, at the price of holding both models (llama.cpp maps the weights).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from owl.config import Settings
from owl.engine.llama.scorer import Scorer
from owl.errors import EvalError
from owl.evals.perplexity import (
    NllStats,
    Progress,
    json_safe,
    log_softmax,
    row_blocks,
    score_chunks,
)
from owl.evals.scorer import open_scorer
from owl.evals.text import chunks, read_text
from owl.store import Manifest, Store


@dataclass(frozen=True)
class KldResult:
    kld_mean: float
    kld_stderr: float  # of the mean
    kld_median: float
    kld_p99: float
    kld_max: float
    top1_agreement: float
    perplexity: float  # the model's
    perplexity_stderr: float
    reference_perplexity: float
    reference_stderr: float
    tokens: int
    chunks: int
    ctx: int
    model: str
    reference: str
    text: str
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return json_safe(asdict(self))


def require_same_vocab(model: Scorer, reference: Scorer) -> None:
    """EvalError unless both models have the same tokens, in the same order, and BOS."""
    where = f"'{model.name}' and '{reference.name}'"
    if model.n_vocab != reference.n_vocab:
        raise EvalError(
            f"{where} have different vocabularies ({model.n_vocab} and {reference.n_vocab} "
            "tokens): KL divergence compares models of one family, e.g. a quantization "
            "against its source"
        )
    ours, theirs = model.token_texts(), reference.token_texts()
    if ours != theirs:
        token = next(index for index, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b)
        mine, other = (text.decode("utf-8", "replace") for text in (ours[token], theirs[token]))
        raise EvalError(
            f"{where} have different vocabularies (token {token} is {mine!r} in one and "
            f"{other!r} in the other): KL divergence compares models of one family"
        )
    if model.bos != reference.bos:
        raise EvalError(f"{where} start texts differently (BOS {model.bos} and {reference.bos})")


def compare_logits(
    logits: np.ndarray, reference: np.ndarray, targets: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per position: KL(ref || model), top-1 agreement, the model's NLL, the reference's NLL."""
    rows = len(targets)
    kld = np.empty(rows)
    same = np.empty(rows, dtype=bool)
    nll = np.empty(rows)
    nll_ref = np.empty(rows)
    index = np.asarray(targets)
    for block in row_blocks(rows):
        logp = log_softmax(logits[block])
        logp_ref = log_softmax(reference[block])
        kld[block] = (np.exp(logp_ref) * (logp_ref - logp)).sum(axis=-1)
        same[block] = logits[block].argmax(axis=-1) == reference[block].argmax(axis=-1)
        span = np.arange(logp.shape[0])
        nll[block] = -logp[span, index[block]]
        nll_ref[block] = -logp_ref[span, index[block]]
    return kld, same, nll, nll_ref


def kl_divergence(
    model: str | Manifest,
    *,
    reference: str | Manifest,
    text: Path | str,
    ctx: int = 512,
    store: Store,
    settings: Settings,
    allow_unsafe: bool = False,
    progress: Progress | None = None,
) -> KldResult:
    """KL divergence of `model` from `reference` on a UTF-8 text file; both perplexities.

    The models must share a vocabulary (EvalError otherwise). Runs on the calling thread.
    `model` runs with the settings' KV cache types (OWL_CACHE_TYPE_K/V), the reference with
    f16 ones: the same model on both sides measures what a quantized cache costs.
    """
    text = Path(text)
    content = read_text(text)
    started = time.perf_counter()
    options = {"n_ctx": ctx, "store": store, "allow_unsafe": allow_unsafe}
    f16 = settings.model_copy(update={"cache_type_k": "f16", "cache_type_v": "f16"})
    with (
        open_scorer(reference, settings=f16, **options) as base,
        open_scorer(model, settings=settings, **options) as scorer,
    ):
        require_same_vocab(scorer, base)
        tokens = base.tokenize(content)
        cut = chunks(tokens, ctx=ctx, bos=base.bos, source=str(text))
        klds, agree = [], []
        stats, stats_ref = NllStats(), NllStats()
        for (ref_logits, targets), (logits, _) in zip(
            score_chunks(base, cut, keep=True),
            score_chunks(scorer, cut, progress=progress),
            strict=True,
        ):
            kld, same, nll, nll_ref = compare_logits(logits, ref_logits, targets)
            klds.append(kld)
            agree.append(same)
            stats.add(nll)
            stats_ref.add(nll_ref)
        names = scorer.name, base.name
    values = np.concatenate(klds)
    spread = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return KldResult(
        kld_mean=float(values.mean()),
        kld_stderr=float(spread),
        kld_median=float(np.median(values)),
        kld_p99=float(np.percentile(values, 99)),
        kld_max=float(values.max()),
        top1_agreement=float(np.concatenate(agree).mean()),
        perplexity=stats.perplexity,
        perplexity_stderr=stats.stderr,
        reference_perplexity=stats_ref.perplexity,
        reference_stderr=stats_ref.stderr,
        tokens=int(values.size),
        chunks=len(cut),
        ctx=ctx,
        model=names[0],
        reference=names[1],
        text=str(text),
        seconds=round(time.perf_counter() - started, 3),
    )
