"""owl/engine/transformers/sampling.py: penalties and filters as llama.cpp applies them."""

from __future__ import annotations

import pytest

from owl.engine.sampling import SamplingParams
from owl.engine.transformers.sampling import penalize, sample_next


def test_penalties_follow_llama_cpp() -> None:
    import torch

    logits = torch.tensor([2.0, -2.0, 1.0])
    params = SamplingParams(repeat_penalty=2.0, frequency_penalty=0.5, presence_penalty=0.25)
    # Positive logits are divided by the repeat penalty, negative ones multiplied; then
    # count x frequency and the presence penalty come off. Token 2 never came: untouched.
    found = penalize(logits, [0, 1, 0], params)
    assert found.tolist() == pytest.approx([2 / 2 - 2 * 0.5 - 0.25, -2 * 2 - 0.5 - 0.25, 1.0])
    assert logits.tolist() == [2.0, -2.0, 1.0]  # the caller's tensor is left alone
    # A penalty strong enough changes the greedy choice.
    greedy = SamplingParams(temperature=0, repeat_penalty=4.0)
    assert sample_next(logits, [], greedy, None) == 0
    assert sample_next(logits, [0], greedy, None) == 2


@pytest.mark.parametrize(
    "params",
    [
        SamplingParams(temperature=2.0, top_k=1, top_p=1.0, min_p=0.0),
        SamplingParams(temperature=2.0, top_k=0, top_p=0.01, min_p=0.0),
        SamplingParams(temperature=2.0, top_k=0, top_p=1.0, min_p=1.0),
    ],
)
def test_filters_that_leave_one_token_give_the_best_one(params: SamplingParams) -> None:
    import torch

    logits = torch.tensor([0.5, 3.0, 2.9, -1.0])
    for seed in range(20):
        generator = torch.Generator().manual_seed(seed)
        assert sample_next(logits, [], params, generator) == 1


def test_min_p_and_top_k_bound_the_draws() -> None:
    import torch

    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    generator = torch.Generator().manual_seed(0)
    min_p = SamplingParams(temperature=1.0, top_k=0, top_p=1.0, min_p=0.25)  # ≥ 0.125: 0, 1, 2
    top_k = SamplingParams(temperature=1.0, top_k=2, top_p=1.0, min_p=0.0)
    assert {sample_next(logits, [], min_p, generator) for _ in range(300)} == {0, 1, 2}
    assert {sample_next(logits, [], top_k, generator) for _ in range(300)} == {0, 1}
