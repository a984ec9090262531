"""Next-token sampling on torch logits, in the order llama-cpp-python chains llama.cpp's samplers.

Penalties first, then greedy (temperature 0) or top_k → top_p → min_p → temperature → a draw,
so that the same SamplingParams mean the same thing in every backend.
"""

from __future__ import annotations

import math
from typing import Any

from owl.engine.sampling import SamplingParams

# The last n tokens the repetition penalties look at, prompt included: what owl's llama.cpp
# backend feeds its sampler (llama.cpp's default window).
PENALTY_WINDOW = 64


def penalize(logits: Any, recent: list[int], params: SamplingParams) -> Any:
    """`logits` with llama.cpp's repeat, frequency and presence penalties for `recent`."""
    neutral = (
        params.repeat_penalty == 1.0
        and params.frequency_penalty == 0.0
        and params.presence_penalty == 0.0
    )
    if neutral or not recent:
        return logits
    import torch

    ids, counts = torch.unique(torch.tensor(recent[-PENALTY_WINDOW:]), return_counts=True)
    logits = logits.clone()
    values = logits[ids]
    penalty = params.repeat_penalty
    values = torch.where(values <= 0, values * penalty, values / penalty)
    values = values - counts * params.frequency_penalty - params.presence_penalty
    logits[ids] = values
    return logits


def sample_next(logits: Any, recent: list[int], params: SamplingParams, generator: Any) -> int:
    """The next token for 1-D float `logits`; `recent`: the tokens so far, prompt included."""
    import torch

    logits = penalize(logits.float(), recent, params)
    if params.temperature == 0:
        return int(torch.argmax(logits))
    size = logits.shape[-1]
    keep = params.top_k if 0 < params.top_k < size else size
    values, ids = torch.topk(logits, keep)  # sorted, largest first
    if params.top_p < 1.0:
        # The smallest head whose probability (among the top_k) reaches top_p.
        total = torch.cumsum(torch.softmax(values, dim=-1), dim=-1)
        cut = int(torch.searchsorted(total, torch.tensor([params.top_p])).item()) + 1
        values, ids = values[:cut], ids[:cut]
    if params.min_p > 0.0:
        # Tokens at least min_p times as likely as the best one; the best one always stays.
        kept = values >= values[0] + math.log(params.min_p)
        values, ids = values[kept], ids[kept]
    probs = torch.softmax(values / params.temperature, dim=-1)
    choice = torch.multinomial(probs, 1, generator=generator)
    return int(ids[choice].item())
