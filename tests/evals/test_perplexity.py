"""owl.evals.perplexity: llama-perplexity's method, on the real bundled model."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from owl.config import Settings
from owl.errors import EngineError, EvalError, SourceNotFound, UnsafeModel
from owl.evals import perplexity, read_text
from owl.evals.perplexity import NllStats, token_nll
from owl.evals.text import chunks
from owl.pull import pull
from owl.store import Store
from tests.support.gguf_edit import copy_with_template, shell_template
from tests.support.tiny_gguf import write_tiny_gguf

GPL3 = Path("/usr/share/common-licenses/GPL-3")
CTX = 64
ONE = 128  # the context of the one-chunk comparison


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One thread: on a shared 2-core machine llama.cpp's second thread spins while another
    process holds its core (four times slower); the numbers are the same (tested below)."""
    return settings.model_copy(update={"threads": 1})


@pytest.fixture
def text(tmp_path: Path) -> Path:
    """The start of the GPL-3: about 220 SmolLM2 tokens, three chunks of 64."""
    path = tmp_path / "gpl3-start.txt"
    path.write_text(GPL3.read_text()[:1000])
    return path


@pytest.mark.slow
def test_the_bundled_models_perplexity_is_sane_and_repeatable(
    text: Path, store: Store, settings: Settings
) -> None:
    first = perplexity("smollm2", text=text, ctx=CTX, store=store, settings=settings)
    again = perplexity("smollm2", text=text, ctx=CTX, store=store, settings=settings)

    assert first.chunks == first.text_tokens // CTX >= 3
    assert first.tokens == first.chunks * (CTX // 2 - 1)  # positions 32…62 predict 33…63
    assert math.isfinite(first.perplexity) and 5 < first.perplexity < 100
    assert first.nll_mean == pytest.approx(math.log(first.perplexity))
    assert 0 < first.stderr < first.perplexity / 2
    assert (first.model, first.ctx, first.text) == ("smollm2", CTX, str(text))
    assert (again.perplexity, again.stderr) == (first.perplexity, first.stderr)


@pytest.mark.slow
def test_one_chunk_agrees_with_a_plain_reimplementation(
    tmp_path: Path, store: Store, settings: Settings, bundled_gguf: Path
) -> None:
    """Llama(logits_all=True) over the same 128 tokens, log-softmax in numpy, second half."""
    import llama_cpp

    text = tmp_path / "one-chunk.txt"
    text.write_text(GPL3.read_text()[:1000] + "\n")  # ~220 tokens: one chunk of 128
    result = perplexity("smollm2", text=text, ctx=ONE, store=store, settings=settings)
    assert (result.chunks, result.tokens) == (1, ONE // 2 - 1)

    llama = llama_cpp.Llama(
        model_path=str(bundled_gguf),
        n_ctx=ONE,
        logits_all=True,
        n_threads=settings.threads,
        # llama.cpp's default ("auto", which llama-perplexity and owl keep) is flash
        # attention on; Llama() turns it off, and that alone moves this NLL by 0.4%.
        flash_attn=True,
        verbose=False,
    )
    try:
        content = text.read_text()[:-1]  # llama-perplexity drops one final newline
        tokens = llama.tokenize(content.encode(), add_bos=True, special=False)[:ONE]
        if llama._model.add_bos_token():
            tokens[0] = llama.token_bos()
        llama.eval(tokens)
        logits = np.array(llama.scores[:ONE], dtype=np.float64)
    finally:
        llama.close()
    shifted = logits - logits.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    half = ONE // 2
    nll = -logp[np.arange(half, ONE - 1), tokens[half + 1 : ONE]]

    assert result.nll_mean == pytest.approx(nll.mean(), rel=1e-4)
    assert result.perplexity == pytest.approx(math.exp(nll.mean()), rel=1e-4)
    # llama-perplexity's error: sqrt(<nll²> - <nll>²) / sqrt(n - 1), times the perplexity
    expected = math.sqrt(nll.var() / (nll.size - 1)) * math.exp(nll.mean())
    assert result.stderr == pytest.approx(expected, rel=1e-3)


@pytest.mark.slow
def test_the_thread_count_does_not_change_the_number(
    text: Path, store: Store, settings: Settings
) -> None:
    one = perplexity("smollm2", text=text, ctx=CTX, store=store, settings=settings)
    two_threads = settings.model_copy(update={"threads": 2})
    two = perplexity("smollm2", text=text, ctx=CTX, store=store, settings=two_threads)
    assert (two.perplexity, two.stderr, two.tokens) == (one.perplexity, one.stderr, one.tokens)


def test_chunks_are_disjoint_start_with_bos_and_drop_the_rest() -> None:
    tokens = list(range(10, 21))  # 11 tokens
    assert chunks(tokens, ctx=4, bos=None, source="t") == [[10, 11, 12, 13], [14, 15, 16, 17]]
    assert chunks(tokens, ctx=4, bos=1, source="t") == [[1, 11, 12, 13], [1, 15, 16, 17]]
    assert tokens[4] == 14  # the caller's tokens are not changed
    with pytest.raises(EvalError, match="at least 4"):
        chunks(tokens, ctx=2, bos=None, source="t")


def test_nll_and_its_error_follow_llama_perplexity() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 7)).astype(np.float32) * 30  # large: overflows a naive softmax
    targets = [0, 3, 6, 2, 2]
    nll = token_nll(logits, targets)
    exact = [
        -(row[t] - np.log(np.exp(row - row.max()).sum()) - row.max())
        for row, t in zip(logits.astype(np.float64), targets, strict=True)
    ]
    np.testing.assert_allclose(nll, exact, rtol=1e-12)
    stats = NllStats()
    stats.add(nll[:2])
    stats.add(nll[2:])
    assert stats.count == 5
    assert stats.perplexity == pytest.approx(math.exp(np.mean(exact)))
    assert stats.stderr == pytest.approx(
        math.sqrt(np.var(exact) / 4) * math.exp(np.mean(exact)), rel=1e-9
    )


@pytest.mark.slow
def test_a_text_too_short_for_one_chunk_says_what_it_needs(
    tmp_path: Path, store: Store, settings: Settings
) -> None:
    short = tmp_path / "short.txt"
    short.write_text("Everyone is permitted to copy and distribute verbatim copies.\n")
    with pytest.raises(EvalError, match=r"has only \d+ tokens, but a context of 64 needs"):
        perplexity("smollm2", text=short, ctx=CTX, store=store, settings=settings)


def test_texts_that_are_not_text(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="no text file"):
        read_text(tmp_path / "absent.txt")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(EvalError, match="is empty"):
        read_text(tmp_path / "empty.txt")
    (tmp_path / "binary.txt").write_bytes(b"GGUF\xff\xfe\x00")
    with pytest.raises(EvalError, match="not UTF-8"):
        read_text(tmp_path / "binary.txt")
    (tmp_path / "one.txt").write_text("one line\n\n")
    assert read_text(tmp_path / "one.txt") == "one line\n"  # one final newline dropped


@pytest.mark.slow
def test_an_unsafe_model_is_not_loaded(
    tmp_path: Path, text: Path, store: Store, settings: Settings, bundled_gguf: Path
) -> None:
    marker = tmp_path / "pwned"
    evil = copy_with_template(bundled_gguf, tmp_path / "evil.gguf", shell_template(marker))
    pull(str(evil), store=store, settings=settings, name="evil")
    with pytest.raises(UnsafeModel, match="'evil' is unsafe"):
        perplexity("evil", text=text, ctx=CTX, store=store, settings=settings)
    assert not marker.exists()


@pytest.mark.slow
def test_a_model_without_a_vocabulary_is_a_clear_error(
    tmp_path: Path, text: Path, store: Store, settings: Settings
) -> None:
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    pull(str(tiny), store=store, settings=settings, name="tiny")
    with pytest.raises(EngineError, match="could not load tiny"):
        perplexity("tiny", text=text, ctx=CTX, store=store, settings=settings)
