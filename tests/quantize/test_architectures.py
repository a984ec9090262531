"""Architecture coverage (tests/support/coverage.py, docs/architectures.md): a tiny random-weight
model of every family is pulled as a safetensors folder, shown with its architecture and exact
parameter count, and run in owl's transformers backend with transformers' greedy tokens; the
families that llama.cpp runs also go through owl convert (f16) and owl quantize (Q8_0) into
llama.cpp, whose logits must match transformers' float32 logits on a fixed 16-token input.

Measured (scripts/architectures.py, docs/architectures.md): f16 max |Δlogit| ≤ 0.005
(deepseek_v3; ~0.0005 for most), top token agreeing at ≥ 15 of 16 positions; Q8_0 max
|Δlogit| ≤ 0.042 (gemma3), top token agreeing at ≥ 13 of 16 (the tiny models' distributions
are flat, so near-ties flip: the logits, not the argmax, carry the check). The tolerances
(coverage.TOLERANCE: f16 ≥ 80% and ≤ 0.02, Q8_0 ≥ 60% and ≤ 0.1) leave 2.4-4x room. The
transformers backend runs the same float32 model as the reference: its greedy tokens agree
exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.config import Settings
from owl.pull import open_store
from owl.store import Store
from tests.support.coverage import TOLERANCE, coverage
from tests.support.tiny_models import FAMILIES, TEXT
from tests.support.tiny_tokenizers import SPM_FILES, spm_ids, train_spm, write_spm_tokenizer

# The families that convert, quantize and run in llama.cpp (docs/architectures.md has all);
# qwen2, gemma and gemma2 with the tiny SentencePiece tokenizer (owl/scan verifies it).
LLAMA_CPP = [
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3",
    "falcon",
    "gpt_neox",
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


def run(family: str, home: tuple[Settings, Store], tmp_path_factory, **paths: bool) -> dict:  # noqa: ANN001
    settings, store = home
    work = tmp_path_factory.getbasetemp()  # shares SmolLM2's folder and the converter
    return coverage(family, work=work, store=store, settings=settings, **paths)


@pytest.mark.slow
@pytest.mark.parametrize("family", LLAMA_CPP)
def test_family_runs_in_llama_cpp_with_the_logits_of_transformers(
    family: str, home: tuple[Settings, Store], tmp_path_factory: pytest.TempPathFactory
) -> None:
    result = run(family, home, tmp_path_factory, hf=False)
    assert result.get("errors") is None, result
    for kind in ("f16", "q8_0"):
        found, limit = result[f"{kind}_found"], TOLERANCE[kind]
        assert found["top1"] >= limit["top1"], (kind, found)
        assert found["max"] <= limit["max"], (kind, found)
    # Quantizing costs accuracy: Q8_0 is measurably further from float32 than f16.
    assert result["q8_0_found"]["mean"] > result["f16_found"]["mean"], result


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_is_pulled_shown_and_run_by_the_transformers_backend(
    family: str, home: tuple[Settings, Store], tmp_path_factory: pytest.TempPathFactory
) -> None:
    result = run(family, home, tmp_path_factory, gguf=False)
    assert result.get("errors") is None, result
    assert result["pull_verdict"] == "clean"
    assert result["inspect"], result["inspect_found"]  # architecture and parameter count
    assert result["transformers_found"] == {"top1": 1.0, "continuation": True}, result


@pytest.mark.slow
@pytest.mark.parametrize(("family", "arch"), [("opt", "OPT"), ("gptj", "GPTJ")])
def test_what_llama_cpp_lacks_is_refused_by_the_converter_with_the_reason(
    family: str, arch: str, home: tuple[Settings, Store], tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings, store = home
    result = run(family, home, tmp_path_factory, hf=False)
    assert result["convert"] is False
    assert f"{arch}ForCausalLM is not supported" in result["errors"][0]
    assert all(not m.name.startswith(f"tiny-{family}:") for m in store.list())  # nothing stored


def test_the_sentencepiece_tokenizer_is_the_same_bytes_every_build() -> None:
    import sentencepiece as spm

    first, second = train_spm(), train_spm()
    assert first == second
    processor = spm.SentencePieceProcessor(model_proto=first)
    pieces = [processor.id_to_piece(i) for i in (0, 1, 2, 3, 106, 107)]
    assert pieces == ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
    assert processor.piece_to_id("<0x0A>") != processor.unk_id()  # byte fallback: llama.cpp


def test_the_sentencepiece_folder_is_the_same_bytes_and_ids_every_build(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    first = write_spm_tokenizer(tmp_path / "first")
    second = write_spm_tokenizer(tmp_path / "second")
    names = sorted(path.name for path in first.iterdir())
    assert set(SPM_FILES) <= set(names)
    assert names == sorted(path.name for path in second.iterdir())
    assert all((first / name).read_bytes() == (second / name).read_bytes() for name in names)
    # transformers' tokenizer.json gives SentencePiece's own ids, <bos> first.
    tokenizer = AutoTokenizer.from_pretrained(str(first))
    assert tokenizer(TEXT).input_ids == spm_ids(TEXT)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id) == (2, 1)
