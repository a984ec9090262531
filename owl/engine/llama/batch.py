"""A llama.cpp batch: tokens of one or more sequences, at their positions, for one decode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import llama_cpp


class Batch:
    """Room for `capacity` tokens, one sequence id each. Fill with `add`, then decode."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._raw: Any = llama_cpp.llama_batch_init(capacity, 0, 1)
        self._raw.n_tokens = 0

    @property
    def raw(self) -> Any:
        """The llama_batch itself, for llama_decode."""
        return self._raw

    @property
    def n_tokens(self) -> int:
        return int(self._raw.n_tokens)

    def clear(self) -> None:
        self._raw.n_tokens = 0

    def add(
        self,
        seq: int,
        tokens: Sequence[int],
        *,
        start: int = 0,
        logits_from: int | None = None,
        last_logits: bool = False,
    ) -> None:
        """Append `tokens` of sequence `seq` at positions start, start+1, …

        Logits are computed for the tokens from index `logits_from` on (None: none), and
        for the last one when `last_logits`.
        """
        raw = self._raw
        n = raw.n_tokens
        if n + len(tokens) > self.capacity:
            raise ValueError(f"{n + len(tokens)} tokens do not fit a batch of {self.capacity}")
        first = len(tokens) if logits_from is None else logits_from
        for offset, token in enumerate(tokens):
            raw.token[n] = token
            raw.pos[n] = start + offset
            raw.n_seq_id[n] = 1
            raw.seq_id[n][0] = seq
            raw.logits[n] = offset >= first
            n += 1
        if last_logits and tokens:
            raw.logits[n - 1] = True
        raw.n_tokens = n

    def close(self) -> None:
        """Free the batch (safe to call twice)."""
        if self._raw is not None:
            llama_cpp.llama_batch_free(self._raw)
            self._raw = None
