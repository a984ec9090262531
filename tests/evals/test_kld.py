"""owl.evals.kl_divergence: the bundled model against itself, a quantization, a stranger."""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import numpy as np
import pytest

from owl.config import Settings
from owl.errors import EvalError
from owl.evals import kl_divergence, perplexity
from owl.evals.kld import compare_logits
from owl.pull import pull
from owl.store import Store

GPL3 = Path("/usr/share/common-licenses/GPL-3")
CTX = 64


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """One thread: on a shared 2-core machine llama.cpp's second thread spins while another
    process holds its core (four times slower); the numbers are the same (see
    tests/evals/test_perplexity.py)."""
    return settings.model_copy(update={"threads": 1})


@pytest.fixture
def text(tmp_path: Path) -> Path:
    """The start of the GPL-3: about 220 SmolLM2 tokens, three chunks of 64."""
    path = tmp_path / "gpl3-start.txt"
    path.write_text(GPL3.read_text()[:1000])
    return path


@pytest.fixture(scope="module")
def requantized(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    """The bundled Q4_1 model requantized to Q8_0 by llama.cpp: same vocabulary, other weights."""
    import llama_cpp

    out = tmp_path_factory.mktemp("q8") / "smol-q8.gguf"
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    params.allow_requantize = True
    params.nthread = 2
    code = llama_cpp.llama_model_quantize(
        str(bundled_gguf).encode(), str(out).encode(), ctypes.byref(params)
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def renamed_token(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    """The bundled model with its last token's text changed: a vocabulary of the same size."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    out = tmp_path_factory.mktemp("vocab") / "renamed.gguf"
    reader = gguf.GGUFReader(bundled_gguf, "r")
    field = reader.get_field(gguf.Keys.Tokenizer.LIST)
    assert field is not None
    tokens = field.contents()
    tokens[-1] = "<|owl-renamed|>"
    arch = reader.get_field(gguf.Keys.General.ARCHITECTURE)
    assert arch is not None
    writer = gguf.GGUFWriter(out, arch=arch.contents(), endianess=reader.endianess)
    details = MetadataDetails(gguf.GGUFValueType.ARRAY, tokens, sub_type=gguf.GGUFValueType.STRING)
    copy_with_new_metadata(reader, writer, {gguf.Keys.Tokenizer.LIST: details}, [])
    return out


@pytest.mark.slow
def test_a_model_against_itself_diverges_nowhere(
    text: Path, store: Store, settings: Settings
) -> None:
    result = kl_divergence(
        "smollm2", reference="smollm2", text=text, ctx=CTX, store=store, settings=settings
    )
    assert result.kld_mean < 1e-6 and result.kld_max < 1e-6
    assert result.top1_agreement == 1.0
    assert result.perplexity == result.reference_perplexity
    assert result.tokens == result.chunks * (CTX // 2 - 1) and result.chunks >= 3


@pytest.mark.slow
def test_a_requantized_model_diverges_a_little(
    text: Path, store: Store, settings: Settings, requantized: Path
) -> None:
    pull(str(requantized), store=store, settings=settings, name="smol-q8")
    result = kl_divergence(
        "smol-q8", reference="smollm2", text=text, ctx=CTX, store=store, settings=settings
    )
    assert 1e-5 < result.kld_mean < 0.1
    assert 0 <= result.kld_median <= result.kld_p99 <= result.kld_max
    assert result.kld_median < result.kld_mean  # a few positions carry most of it
    assert 0.8 < result.top1_agreement <= 1.0
    assert result.perplexity != result.reference_perplexity
    assert abs(math.log(result.perplexity / result.reference_perplexity)) < 0.1
    # The same chunks and positions as `owl eval perplexity` of each model.
    alone = perplexity("smol-q8", text=text, ctx=CTX, store=store, settings=settings)
    assert result.perplexity == pytest.approx(alone.perplexity, rel=1e-9)
    assert result.perplexity_stderr == pytest.approx(alone.stderr, rel=1e-9)
    assert (result.tokens, result.chunks) == (alone.tokens, alone.chunks)


@pytest.mark.slow
def test_models_with_different_vocabularies_do_not_compare(
    text: Path, store: Store, settings: Settings, renamed_token: Path
) -> None:
    pull(str(renamed_token), store=store, settings=settings, name="renamed")
    with pytest.raises(EvalError, match="different vocabularies.*token 49151"):
        kl_divergence(
            "renamed", reference="smollm2", text=text, ctx=CTX, store=store, settings=settings
        )


def test_kl_divergence_is_of_the_model_from_the_reference() -> None:
    """KL(P_ref || P_model) = Σ p_ref log(p_ref / p_model): not symmetric, so check which."""
    reference = np.log(np.array([[0.5, 0.5, 1e-30]], dtype=np.float32))
    model = np.log(np.array([[0.75, 0.25, 1e-30]], dtype=np.float32))
    kld, same, nll, nll_ref = compare_logits(model, reference, [1])
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert kld[0] == pytest.approx(expected, rel=1e-6)
    assert bool(same[0])  # both put token 0 first (the reference's tie goes to the first)
    assert nll[0] == pytest.approx(-math.log(0.25), rel=1e-6)
    assert nll_ref[0] == pytest.approx(-math.log(0.5), rel=1e-6)
