"""owl/engine/llama/backend.py on the real bundled model: what it declares and reports."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.engine import Capability, Model, Occupancy
from owl.engine.memory import with_overhead
from owl.formats import inspect

pytestmark = pytest.mark.slow


def test_it_declares_generation_and_reports_memory_and_occupancy(
    shared_model: Model, bundled_gguf: Path
) -> None:
    assert shared_model.capabilities == {Capability.CHAT, Capability.COMPLETE, Capability.SCORE}
    assert shared_model.slots == 1
    assert shared_model.occupancy() == Occupancy(slots=1, running=0, waiting=0)
    # The shared model is loaded with ctx 2048: one slot's KV cache, the file, the margin.
    metadata = inspect(bundled_gguf).metadata
    expected = with_overhead(bundled_gguf.stat().st_size, metadata, ctx=shared_model.n_ctx)
    assert shared_model.memory_bytes == expected


def test_the_vocabulary_answers_through_the_wrapper(shared_model: Model) -> None:
    backend = shared_model.backend
    assert "<|im_start|>" in backend.control_texts
    eos = backend.eos_token
    assert eos is not None and backend.is_eog(eos)
    assert backend.token_text(eos) == "<|im_end|>"
    tokens = backend.tokenize("Hello, world", add_bos=False, special=False)
    assert b"".join(backend.token_bytes(token) for token in tokens) == b"Hello, world"
    # With special=False control text stays plain text (no single control token).
    plain = backend.tokenize("<|im_start|>", add_bos=False, special=False)
    assert len(plain) > 1 and backend.tokenize("<|im_start|>", add_bos=False, special=True) == [1]
