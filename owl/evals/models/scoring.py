"""Log-likelihoods on a Scorer, as lm-evaluation-harness computes them.

A request's context and continuation are tokenized as lm-eval's `_encode_pair` does: the
whole string and the context alone, the continuation's tokens being those of the whole after
the context's (trailing spaces of the context move onto the continuation first, so that a
word and its leading space stay one token). What is scored is the context's tokens followed
by those: lm-eval's `(context_enc + continuation_enc)[:-1]`.

Where lm-eval evaluates every choice of a question from position 0, owl evaluates the shared
context once and each choice from the end of it (llama.cpp's KV cache keeps the context; a
choice's positions are dropped before the next). A position's numbers do not depend on how
the sequence was cut into decodes beyond float rounding (tests/evals/test_models_engine.py
measures it). Rolling log-likelihood is lm-eval's too: windows of n_ctx tokens, the first
predicted after the prefix token (BOS, else EOS), each later one after the token before it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from owl.engine.llama.scorer import Scorer
from owl.errors import EvalError
from owl.evals.perplexity import log_softmax, row_blocks


@dataclass(frozen=True)
class Scored:
    """One continuation's summed log-probability, whether greedy decoding gives it, and the
    tokens its scoring took (the shared context counted with the first choice only)."""

    logprob: float
    greedy: bool
    tokens: int


def encode_pair(scorer: Scorer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) as lm-eval's `_encode_pair` makes them."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    if not context:
        whole = scorer.tokenize(continuation)
        if whole and scorer.bos is not None and whole[0] == scorer.bos:
            return whole[:1], whole[1:]
        prefix = scorer.prefix
        if prefix is None:
            raise EvalError(
                f"{scorer.name} has neither a BOS nor an EOS token, so a continuation "
                "without a context cannot be scored; give the request a context"
            )
        return [prefix], whole
    head = scorer.tokenize(context)
    whole = scorer.tokenize(context + continuation)
    tail = whole[len(head) :]
    if not tail and continuation:
        # The continuation merged into the context's last token (a tokenizer quirk lm-eval
        # would score as nothing): score its own tokens after the context instead.
        tail = [t for t in scorer.tokenize(continuation) if t != scorer.bos]
    return head, tail


def _fit(head: list[int], longest: int, n_ctx: int, *, name: str) -> list[int]:
    """The context cut from the left, as lm-eval does, so that the longest choice fits."""
    if longest > n_ctx:
        raise EvalError(
            f"a continuation of {longest} tokens does not fit {name}'s context of {n_ctx}; "
            "load it with a larger --ctx"
        )
    room = n_ctx + 1 - longest  # the last continuation token is predicted, never decoded
    return head[-room:] if len(head) > room else head


def _continuation(first: np.ndarray, rest: np.ndarray | None, tokens: Sequence[int]) -> Scored:
    """Sum log p of `tokens` over the logits that predict them: `first` for the first,
    the rows of `rest` for the others."""
    rows = first[None, :] if rest is None else np.vstack([first[None, :], rest])
    targets = np.asarray(tokens)
    total, greedy = 0.0, True
    for block in row_blocks(len(targets)):
        logits = rows[block]
        picked = targets[block]
        total += float(log_softmax(logits)[np.arange(len(picked)), picked].sum())
        greedy = greedy and bool((logits.argmax(axis=-1) == picked).all())
    return Scored(logprob=total, greedy=greedy, tokens=len(targets))


def score_choices(scorer: Scorer, context: str, continuations: Sequence[str]) -> list[Scored]:
    """Each continuation of one shared context: the context decoded once, each continuation
    from the end of it."""
    pairs = [encode_pair(scorer, context, continuation) for continuation in continuations]
    if not pairs:
        return []
    # The context's tokens depend on the context alone (its trailing spaces move whatever
    # the continuation), so every pair has the same head.
    head = pairs[0][0]
    return _score_shared(scorer, head, [tail for _, tail in pairs])


def _score_shared(scorer: Scorer, head: list[int], tails: list[list[int]]) -> list[Scored]:
    longest = max((len(tail) for tail in tails), default=0)
    head = _fit(head, longest, scorer.n_ctx, name=scorer.name)
    start = len(head)
    last = scorer.logits(head, first=start - 1)[0]  # a copy: it predicts every first token
    results = []
    for number, tail in enumerate(tails):
        counted = start if number == 0 else 0
        if not tail:
            results.append(Scored(logprob=0.0, greedy=True, tokens=counted))
            continue
        rest = scorer.extend(tail[:-1], start=start, copy=False) if len(tail) > 1 else None
        result = _continuation(last, rest, tail)
        results.append(Scored(result.logprob, result.greedy, result.tokens + counted))
    return results


def rolling_windows(
    tokens: Sequence[int], *, prefix: int, window: int
) -> Iterator[tuple[list[int], list[int]]]:
    """lm-eval's get_rolling_token_windows(context_len=1) made disjoint: (context, targets)
    pairs that predict every token once, each input (context + targets)[:-1] at most
    `window` tokens."""
    tokens = list(tokens)
    if not tokens:
        return
    first = min(window, len(tokens))
    yield [prefix], tokens[:first]
    predicted = first
    while predicted < len(tokens):
        count = min(len(tokens) - predicted, window)
        end = predicted + count
        context = tokens[max(end - window - 1, 0) : end - 1]
        targets = tokens[end - count : end]
        yield context[: len(context) - (len(targets) - 1)], targets
        predicted += count


def score_rolling(scorer: Scorer, text: str) -> Scored:
    """The summed log-probability of every token of `text` (greedy: of each window)."""
    tokens = scorer.tokenize(text)
    if tokens and scorer.bos is not None and tokens[0] == scorer.bos:
        prefix, tokens = tokens[0], tokens[1:]
    elif scorer.prefix is not None:
        prefix = scorer.prefix
    elif tokens:  # no BOS nor EOS: the first token is given, not predicted
        prefix, tokens = tokens[0], tokens[1:]
    else:
        return Scored(logprob=0.0, greedy=True, tokens=0)
    total, greedy, count = 0.0, True, 0
    for context, targets in rolling_windows(tokens, prefix=prefix, window=scorer.n_ctx):
        sequence = (context + targets)[:-1]
        first = len(context) - 1
        logits = scorer.logits(sequence, first=first, copy=False)
        result = _continuation(logits[0], logits[1:] if len(targets) > 1 else None, targets)
        total += result.logprob
        greedy = greedy and result.greedy
        count += len(sequence)
    return Scored(logprob=total, greedy=greedy, tokens=count)
