"""What every embedder returns, and the check every embedder makes of an input's tokens:
llama.cpp's (owl/engine/llama/embedder.py) and transformers' image embedder alike."""

from __future__ import annotations

from dataclasses import dataclass

from owl.errors import ContextOverflow, InvalidPrompt


@dataclass(frozen=True)
class Embeddings:
    """One vector per input, in input order, and the tokens each input counted."""

    vectors: list[list[float]]
    token_counts: list[int]

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)


def checked_input(
    tokens: list[int], index: int, *, vocab: int, n_ctx: int, truncate: bool, name: str
) -> list[int]:
    """Input `index`'s token ids if the model can embed them: not empty, in its vocabulary,
    at most `n_ctx` long (with `truncate`, its first `n_ctx`), else InvalidPrompt or
    ContextOverflow saying what to do."""
    if not tokens:
        raise InvalidPrompt(f"input {index} is empty; every input needs some text")
    if any(not 0 <= token < vocab for token in tokens):
        raise InvalidPrompt(
            f"input {index} has a token id outside the model's vocabulary (0–{vocab - 1})"
        )
    if len(tokens) > n_ctx:
        if not truncate:
            raise ContextOverflow(
                f"input {index} is {len(tokens)} tokens, more than the {n_ctx} "
                f"'{name}' embeds at once; shorten or split it"
            )
        tokens = tokens[:n_ctx]
    return tokens
