"""Architecture coverage: tiny random-weight models of each family that llama.cpp runs, taken
from safetensors through owl convert (f16) and owl quantize (Q8_0) into llama.cpp, whose logits
must match transformers' float32 logits on a fixed 16-token input.

Measured (scripts/architectures.py, docs/architectures.md): f16 max |Δlogit| ≤ 0.005
(deepseek_v3; ~0.0005 for most), top token agreeing at ≥ 15 of 16 positions; Q8_0 max
|Δlogit| ≤ 0.042 (gemma3), top token agreeing at ≥ 13 of 16 (the tiny models' distributions
are flat, so near-ties flip: the logits, not the argmax, carry the check). The tolerances
(tiny_models.TOLERANCE: f16 ≥ 80% and ≤ 0.02, Q8_0 ≥ 60% and ≤ 0.1) leave 2.4-4x room.
"""

from __future__ import annotations

import pytest

from owl.config import Settings
from owl.store import Store, open_store
from tests.support.tiny_models import TOLERANCE, coverage

# The families that convert, quantize and run in llama.cpp (docs/architectures.md has all).
WORKING = [
    "llama",
    "mistral",
    "qwen3",
    "gemma3",
    "falcon",
    "bloom",
    "granite",
    "mixtral",
    "deepseek_v2",
    "deepseek_v3",
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Store]:
    settings = Settings(home=tmp_path_factory.mktemp("arch-home"), ctx=64)
    return settings, open_store(settings)


@pytest.mark.slow
@pytest.mark.parametrize("family", WORKING)
def test_family_runs_in_llama_cpp_with_the_logits_of_transformers(
    family: str, home: tuple[Settings, Store], tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings, store = home
    work = tmp_path_factory.getbasetemp()  # shares SmolLM2's folder and the converter
    result = coverage(family, work=work, store=store, settings=settings)
    assert result.get("error") is None, result
    for kind in ("f16", "q8_0"):
        found, limit = result[f"{kind}_found"], TOLERANCE[kind]
        assert found["top1"] >= limit["top1"], (kind, found)
        assert found["max"] <= limit["max"], (kind, found)
    # Quantizing costs accuracy: Q8_0 is measurably further from float32 than f16.
    assert result["q8_0_found"]["mean"] > result["f16_found"]["mean"], result


@pytest.mark.slow
def test_opt_is_refused_by_the_converter_with_the_reason(
    home: tuple[Settings, Store], tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings, store = home
    result = coverage("opt", work=tmp_path_factory.getbasetemp(), store=store, settings=settings)
    assert result["convert"] is False
    assert "OPTForCausalLM is not supported" in result["error"]
    assert all(manifest.name != "tiny-opt" for manifest in store.list())  # nothing stored
