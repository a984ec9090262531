"""llama.cpp sampler chains: penalties, grammar, then greedy or top-k/top-p/min-p/temperature."""

from __future__ import annotations

from typing import Any

import llama_cpp

from owl.engine.llama.context import Context
from owl.engine.sampling import SamplingParams
from owl.errors import InvalidPrompt

# The last n tokens the repetition penalties look at: llama.cpp's default.
PENALTY_LAST_N = 64


def make_sampler(vocab: Any, n_vocab: int, params: SamplingParams, history: list[int]) -> Any:
    """A sampler chain for one generation; `history` feeds its repetition penalties.

    InvalidPrompt when llama.cpp cannot parse the grammar.
    """
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    penalised = (
        params.repeat_penalty != 1.0
        or params.frequency_penalty != 0.0
        or params.presence_penalty != 0.0
    )
    if penalised:
        penalties = llama_cpp.llama_sampler_init_penalties(
            n_vocab,
            PENALTY_LAST_N,
            params.repeat_penalty,
            params.frequency_penalty,
            params.presence_penalty,
        )
        # The history goes to the penalties alone: accepted by the whole chain, the prompt's
        # tokens would also advance the grammar, which then aborts the process.
        for token in history[-PENALTY_LAST_N:]:
            llama_cpp.llama_sampler_accept(penalties, token)
        add(chain, penalties)
    if params.grammar is not None:
        grammar = llama_cpp.llama_sampler_init_grammar(
            vocab, params.grammar.encode("utf-8"), b"root"
        )
        if not grammar:
            llama_cpp.llama_sampler_free(chain)
            raise InvalidPrompt(
                "llama.cpp could not parse the output grammar; check the JSON schema or GBNF given"
            )
        add(chain, grammar)
    if params.temperature <= 0:
        add(chain, llama_cpp.llama_sampler_init_greedy())
    else:
        seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed
        if params.top_k > 0:
            add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
        add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
        add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
        add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
        add(chain, llama_cpp.llama_sampler_init_dist(seed))
    return chain


def sample(sampler: Any, context: Context, index: int) -> int:
    """A token from the distribution after the `index`-th token of the context's last batch."""
    # llama_sampler_sample also accepts the token into the chain (penalties, grammar).
    return int(llama_cpp.llama_sampler_sample(sampler, context.ctx, index))


def free_sampler(sampler: Any) -> None:
    llama_cpp.llama_sampler_free(sampler)
