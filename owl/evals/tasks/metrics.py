"""Metrics and filters as lm-evaluation-harness (0.4.13) defines them, without its code.

- acc: the choice of highest log-likelihood is the gold one; acc_norm: the same with each
  log-likelihood divided by the choice's length in characters (the delimiter not counted);
  ties go to the first choice, as numpy's argmax breaks them.
- exact_match: the filtered answer equals the target, after `regexes_to_ignore`
  (removed from both), `ignore_case`, `ignore_punctuation` (string.punctuation),
  `ignore_numbers`.
- f1 (multiple choice): binary F1 over (gold, prediction) with choice 1 the positive class;
  it is not a mean over questions, so each question scores its parts (f1_tp, f1_fp, f1_fn).
- perplexity family: from summed log-likelihoods (and word/byte counts) over all questions.
- stderr: means use the sample standard deviation (ddof=1) over √n; f1 and perplexity a
  bootstrap (lm-eval's default is 100,000 resamples in parallel; owl draws 1,000 from a
  fixed seed, so the figure is reproducible and close, not identical). No stderr below two
  questions (lm-eval prints "N/A").
"""

from __future__ import annotations

import math
import random
import re
import string
from collections.abc import Callable, Sequence
from typing import Any

from owl.errors import EvalError

BOOTSTRAP_ITERS = 1000
BOOTSTRAP_SEED = 1234
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_DIGITS = str.maketrans("", "", string.digits)

Scores = list[dict[str, float]]


def argmax(values: Sequence[float]) -> int:
    """The index of the first largest value (numpy's argmax; NaN never wins here)."""
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best


def choice_predictions(logprobs: Sequence[float], choices: Sequence[str]) -> tuple[int, int]:
    """(acc's prediction, acc_norm's prediction) over the choices' log-likelihoods."""
    normed = [lp / max(len(c), 1) for lp, c in zip(logprobs, choices, strict=True)]
    return argmax(logprobs), argmax(normed)


def exact_match(
    prediction: str,
    reference: str,
    *,
    regexes_to_ignore: Sequence[str] | None = None,
    ignore_case: bool = False,
    ignore_punctuation: bool = False,
    ignore_numbers: bool = False,
) -> float:
    """1.0 when the prediction equals the reference after lm-eval's normalisations."""
    for pattern in regexes_to_ignore or ():
        prediction, reference = re.sub(pattern, "", prediction), re.sub(pattern, "", reference)
    if ignore_case:
        prediction, reference = prediction.lower(), reference.lower()
    if ignore_punctuation:
        prediction, reference = (
            prediction.translate(_PUNCTUATION),
            reference.translate(_PUNCTUATION),
        )
    if ignore_numbers:
        prediction, reference = prediction.translate(_DIGITS), reference.translate(_DIGITS)
    return float(prediction == reference)


EXACT_MATCH_OPTIONS = frozenset(
    {"regexes_to_ignore", "ignore_case", "ignore_punctuation", "ignore_numbers"}
)


def f1_parts(gold: int, pred: int) -> dict[str, float]:
    """One question's share of a binary F1 (choice 1 is the positive class)."""
    return {
        "f1_tp": float(gold == 1 and pred == 1),
        "f1_fp": float(gold != 1 and pred == 1),
        "f1_fn": float(gold == 1 and pred != 1),
    }


# ---- aggregation -------------------------------------------------------------------------


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def mean_stderr(values: Sequence[float]) -> float:
    """Sample standard deviation (ddof=1) over √n, lm-eval's mean_stderr."""
    mu = mean(values)
    return math.sqrt(sum((x - mu) ** 2 for x in values) / (len(values) - 1)) / math.sqrt(
        len(values)
    )


def _f1(rows: Scores) -> float:
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("f1_tp", "f1_fp", "f1_fn"))
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def _exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:  # a perplexity past a float's range is infinite, not a crash
        return math.inf


def _perplexity(rows: Scores) -> float:
    return _exp(-mean([r["loglikelihood"] for r in rows]))


def _weighted(count: str, finish: Callable[[float], float]) -> Callable[[Scores], float]:
    def total(rows: Scores) -> float:
        return finish(sum(r["loglikelihood"] for r in rows) / sum(r[count] for r in rows))

    return total


def _bootstrap_stderr(statistic: Callable[[Scores], float], rows: Scores) -> float:
    rnd = random.Random(BOOTSTRAP_SEED)
    draws = [statistic(rnd.choices(rows, k=len(rows))) for _ in range(BOOTSTRAP_ITERS)]
    return mean_stderr(draws) * math.sqrt(len(draws))  # the draws' standard deviation


# Metrics that are not a mean of a per-question value: (the parts each question gives,
# the statistic over questions, whether a bootstrap gives its stderr).
_POOLED: dict[str, tuple[tuple[str, ...], Callable[[Scores], float], bool]] = {
    "f1": (("f1_tp", "f1_fp", "f1_fn"), _f1, True),
    "perplexity": (("loglikelihood",), _perplexity, True),
    "word_perplexity": (
        ("loglikelihood", "words"),
        _weighted("words", lambda x: _exp(-x)),
        False,
    ),
    "byte_perplexity": (
        ("loglikelihood", "bytes"),
        _weighted("bytes", lambda x: _exp(-x)),
        False,
    ),
    "bits_per_byte": (
        ("loglikelihood", "bytes"),
        _weighted("bytes", lambda x: -x / math.log(2)),
        False,
    ),
}


def aggregate(metric_names: Sequence[str], scores: Scores) -> dict[str, float]:
    """{metric: value, metric_stderr: its standard error} over the questions that score it."""
    result: dict[str, float] = {}
    for name in metric_names:
        pooled = _POOLED.get(name)
        if pooled is not None:
            parts, statistic, bootstrap = pooled
            rows = [s for s in scores if all(p in s for p in parts)]
            if rows:
                result[name] = statistic(rows)
                if bootstrap and len(rows) > 1:
                    result[_stderr_name(name)] = _bootstrap_stderr(statistic, rows)
            continue
        values = [s[name] for s in scores if name in s]
        if not values:
            continue
        result[name] = mean(values)
        if len(values) > 1:
            result[_stderr_name(name)] = mean_stderr(values)
    return result


def _stderr_name(metric: str) -> str:
    # Always the metric's name and "_stderr" ("exact_match,strict_stderr" with a filter;
    # lm-eval writes "exact_match_stderr,strict"): one rule for every reader of the results.
    return f"{metric}_stderr"


# ---- filters -----------------------------------------------------------------------------

Filter = Callable[[list[Any]], Any]


def _regex(
    regex_pattern: str = r"#### (\-?[0-9\.\,]+)", group_select: int = 0, fallback: str = "[invalid]"
) -> Filter:
    try:
        regex = re.compile(regex_pattern)
    except (re.error, TypeError) as err:
        raise EvalError(
            f"the regex filter's regex_pattern {regex_pattern!r} is not a regex: {err}"
        ) from err

    def apply(responses: list[Any]) -> list[Any]:
        out = []
        for response in responses:
            found = regex.findall(response if isinstance(response, str) else "")
            if not found:
                out.append(fallback)
                continue
            try:
                match = found[group_select]
            except (IndexError, TypeError):
                out.append(fallback)
                continue
            if isinstance(match, tuple):
                match = next((m for m in match if m), fallback)
            out.append(match.strip())
        return out

    return apply


def _each(transform: Callable[[str], str]) -> Callable[[], Filter]:
    def build() -> Filter:
        return lambda responses: [transform(r) if isinstance(r, str) else r for r in responses]

    return build


def _take_first() -> Filter:
    return lambda responses: responses[0] if isinstance(responses, list) else responses


_FILTERS: dict[str, Callable[..., Filter]] = {
    "regex": _regex,
    "take_first": _take_first,
    "remove_whitespace": _each(str.strip),
    "lowercase": _each(str.lower),
    "uppercase": _each(str.upper),
}


def build_filter(steps: Any, *, where: str) -> Callable[[str], Any]:
    """One filter_list entry's pipeline, from a model's text to what the metrics compare."""
    if not isinstance(steps, list) or not steps:
        raise EvalError(f"{where}: `filter` must be a list of {{function: …}} steps")
    built: list[Filter] = []
    for step in steps:
        if not isinstance(step, dict) or not isinstance(step.get("function"), str):
            raise EvalError(f"{where}: each filter step needs a `function` name")
        name = step["function"]
        if name not in _FILTERS:
            raise EvalError(
                f"{where}: owl has no filter {name!r}; it has {', '.join(sorted(_FILTERS))}"
            )
        options = {k: v for k, v in step.items() if k != "function"}
        try:
            built.append(_FILTERS[name](**options))
        except TypeError as err:
            raise EvalError(f"{where}: filter {name!r} does not take {sorted(options)}") from err

    def run(text: str) -> Any:
        value: Any = [text]
        for apply in built:
            value = apply(value)
        # A pipeline without take_first still compares one response (owl asks for one).
        return value[0] if isinstance(value, list) and value else value

    return run
