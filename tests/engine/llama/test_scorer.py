"""owl/engine/llama/scorer.py: chunks of the bundled model's tokens in, logits out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from owl.engine.llama.scorer import Scorer
from owl.errors import EngineError, EvalError
from tests.support.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.slow


def test_logits_of_the_positions_asked_for_in_one_decode(bundled_gguf: Path) -> None:
    with Scorer(bundled_gguf, n_ctx=32, threads=1, name="smollm2") as scorer:
        tokens = scorer.tokenize("The quick brown fox jumps over the lazy dog. " * 5)[:32]
        assert scorer.n_vocab == 49152 and len(tokens) == 32
        rows = scorer.logits(tokens, first=16)
        assert rows.shape == (16, scorer.n_vocab) and rows.dtype == np.float32
        # The same chunk again is a fresh sequence: the same numbers.
        assert np.array_equal(scorer.logits(tokens, first=16), rows)
        # Fewer output rows may take another matmul kernel (another summation order): float32
        # over a 576-wide dot product of logits up to ~30 moves them by well under 1e-3.
        assert np.allclose(scorer.logits(tokens, first=24), rows[8:], rtol=0, atol=1e-3)
        with pytest.raises(EvalError, match="cannot score 33 tokens from 0 in a context of 32"):
            scorer.logits([*tokens, tokens[0]], first=0)
    scorer.close()  # twice is fine


def test_a_file_llama_cpp_cannot_load_raises_the_error_asked_for(tmp_path: Path) -> None:
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    with pytest.raises(EngineError, match="could not load tiny"):
        Scorer(tiny, n_ctx=32, threads=1, name="tiny")

    class Refused(EngineError):
        pass

    with pytest.raises(Refused, match="could not load tiny.gguf"):
        Scorer(tiny, n_ctx=32, threads=1, error=Refused)
