"""owl/engine/llama/batch.py: filling a llama.cpp batch (no model needed)."""

from __future__ import annotations

import pytest

from owl.engine.llama.batch import Batch


def _rows(batch: Batch) -> list[tuple[int, int, int, bool]]:
    raw = batch.raw
    return [
        (raw.token[i], raw.pos[i], raw.seq_id[i][0], bool(raw.logits[i]))
        for i in range(batch.n_tokens)
    ]


def test_sequences_go_in_at_their_positions_with_the_logits_asked_for() -> None:
    batch = Batch(8)
    try:
        batch.add(0, [10, 11, 12], start=5, last_logits=True)
        batch.add(1, [20, 21, 22], logits_from=1)
        assert _rows(batch) == [
            (10, 5, 0, False), (11, 6, 0, False), (12, 7, 0, True),
            (20, 0, 1, False), (21, 1, 1, True), (22, 2, 1, True),
        ]  # fmt: skip
        batch.clear()
        batch.add(3, [7], logits_from=0)
        assert _rows(batch) == [(7, 0, 3, True)]
    finally:
        batch.close()
        batch.close()  # twice is fine


def test_more_tokens_than_the_batch_holds_are_refused() -> None:
    batch = Batch(2)
    try:
        with pytest.raises(ValueError, match="do not fit a batch of 2"):
            batch.add(0, [1, 2, 3])
        assert batch.n_tokens == 0
    finally:
        batch.close()
