"""Few-shot examples as lm-eval 0.4.13 draws them (api/samplers.py), without its code.

The default sampler is one `random.Random(1234)` for the task (the evaluator's
fewshot_random_seed) and `rnd.sample(pool, n)` for each question in order; when the
few-shot split is the test split (lm-eval compares the two names, None included) it draws
`n + 1` and drops the question's own row. `first_n` takes the pool's first n rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from owl.errors import EvalError
from owl.evals.tasks.lm_eval_prompts import Fields

FEWSHOT_SEED = 1234
SAMPLERS = ("default", "first_n")
_OVERRIDES = (
    "doc_to_text",
    "doc_to_target",
    "doc_to_choice",
    "gen_prefix",
    "target_delimiter",
    "fewshot_delimiter",
)

Row = dict[str, Any]
Draw = Callable[[Row, int], list[Row]]


def fewshot_fields(config: dict[str, Any], fields: Fields) -> Fields:
    """The question's fields, with fewshot_config's overrides for the examples."""
    fewshot = config.get("fewshot_config") or {}
    overrides = {
        k: fewshot[k]
        for k in _OVERRIDES
        if isinstance(fewshot, dict) and fewshot.get(k) is not None
    }
    return replace(fields, **overrides)


class FewshotSampler:
    """Draws each question's examples; `start()` begins a run's sequence afresh."""

    def __init__(self, config: dict[str, Any], splits: dict[str, list[Row]], *, where: str) -> None:
        fewshot = config.get("fewshot_config") or {}
        if not isinstance(fewshot, dict):
            raise EvalError(f"{where}: fewshot_config must be a mapping")
        self.where = where
        self.sampler = fewshot.get("sampler", "default")
        if self.sampler not in SAMPLERS:
            raise EvalError(
                f"{where}: fewshot_config.sampler {self.sampler!r}: owl has {', '.join(SAMPLERS)}"
            )
        split = fewshot.get("split", config.get("fewshot_split"))
        self.remove_self = split == config.get("test_split")
        if split is not None:
            if split not in splits:
                raise EvalError(f"{where}: fewshot_split {split!r} is not in data_files")
            pool = splits[split]
        elif isinstance(fewshot.get("samples"), list):
            pool = fewshot["samples"]
        else:  # lm-eval's rule: the training split, else validation, else test
            names = [config.get(k) for k in ("training_split", "validation_split", "test_split")]
            pool = next((splits[n] for n in names if n is not None and n in splits), [])
        indices = fewshot.get("fewshot_indices")
        if indices is not None:
            if not isinstance(indices, list) or not all(
                isinstance(i, int) and 0 <= i < len(pool) for i in indices
            ):
                raise EvalError(f"{where}: fewshot_indices must be row numbers of the pool")
            pool = [pool[i] for i in indices]
        self.pool = list(pool)

    def start(self) -> Draw:
        rnd = random.Random(FEWSHOT_SEED)
        pool = self.pool

        def draw(doc: Row, n: int) -> list[Row]:
            if n == 0:
                return []
            others = [d for d in pool if d != doc] if self.remove_self else pool
            # lm-eval draws one more than it needs when it may have to drop the question
            drawn = n + 1 if self.remove_self and self.sampler == "default" else n
            if len(others) < n or len(pool) < drawn:
                raise EvalError(
                    f"{self.where}: num_fewshot is {n} but the few-shot pool has "
                    f"{len(pool)} rows"
                    + (", the question's own included" if self.remove_self else "")
                )
            if self.sampler == "first_n":
                return others[:n]
            if not self.remove_self:
                return rnd.sample(pool, n)
            shots = [d for d in rnd.sample(pool, n + 1) if d != doc][:n]
            if len(shots) < n:  # the question's row is in the pool more than once
                shots = rnd.sample(others, n)
            return shots

        return draw
