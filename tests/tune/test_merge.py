"""owl export --merge: a real LoRA adapter (tests/support/tiny_lora.py) merged into its tiny
llama base by PEFT, converted and stored with its lineage; it answers as base + adapter does.

Measured: the merged f16 GGUF's logprobs differ from llama.cpp's base + adapter by ≈ 4e-4 at
most on the fixed input (both f16; the merge rounds W + BA to f16 once), same greedy tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from owl import engine
from owl.errors import AdapterMismatch
from owl.pull import pull
from owl.store import parse_name
from owl.store.manifest import Parent
from owl.tune.merge import merge
from tests.engine.test_adapters import greedy
from tests.support.cli import owl
from tests.support.coverage import TOLERANCE
from tests.support.tiny_lora import ADAPTER, BASE, TinyLora, tiny_lora

pytestmark = pytest.mark.slow  # loads models, starts servers


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> TinyLora:
    work = tmp_path_factory.getbasetemp()
    return tiny_lora(work, tmp_path_factory.mktemp("merge") / "owl-home", bundled_gguf)


def answer(lora: TinyLora, manifest, **options):  # noqa: ANN001, ANN201
    model = engine.load(manifest, store=lora.store, settings=lora.settings, **options)
    try:
        return greedy(model)
    finally:
        model.close()


def test_the_merged_model_answers_as_base_plus_adapter(lora: TinyLora) -> None:
    merged = merge(lora.adapter, store=lora.store, settings=lora.settings)
    assert merged.display_name == f"{ADAPTER}-merged:f16"
    assert merged.format == "gguf" and merged.info["quantization"] == "F16"
    assert [(p.name, p.relation, p.digest) for p in merged.parents] == [
        (f"{BASE}:f16", "merged", lora.base.weights.digest),
        (ADAPTER, "merged", lora.adapter.weights.digest),
    ]
    assert merged.license == lora.base.license == "apache-2.0"  # the tiny model card's
    tokens, prompt = answer(lora, merged)
    expected_tokens, expected_prompt = answer(lora, lora.base, adapters=[lora.adapter])
    base_tokens, _ = answer(lora, lora.base)
    assert tokens == expected_tokens != base_tokens
    diffs = [
        abs(ours.logprob - theirs.logprob)
        for ours, theirs in zip(prompt, expected_prompt, strict=True)
        if ours is not None and theirs is not None
    ]
    assert max(diffs) <= TOLERANCE["f16"]["max"], max(diffs)
    # Asked again: the same model, not a second merge.
    again = merge(lora.adapter, store=lora.store, settings=lora.settings)
    assert again.weights.digest == merged.weights.digest


def test_owl_export_merges_and_quantizes_from_the_command_line(lora: TinyLora) -> None:
    done = owl(
        lora.settings.home,
        "export",
        ADAPTER,
        "--merge",
        "--quantize",
        "Q8_0",
        "--name",
        "mine",
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "exported mine:q8_0" in done.stdout
    quantized = lora.store.get(parse_name("mine:q8_0"))
    f16 = lora.store.get(parse_name("mine:f16"))
    assert [(p.name, p.relation) for p in quantized.parents] == [("mine:f16", "quantized")]
    assert {p.relation for p in f16.parents} == {"merged"}
    assert quantized.license == "apache-2.0"
    refused = owl(lora.settings.home, "export", ADAPTER)
    assert refused.returncode != 0 and "--merge" in refused.stderr


def test_only_an_adapter_with_its_peft_weights_merges(lora: TinyLora) -> None:
    with pytest.raises(AdapterMismatch, match="not a LoRA adapter"):
        merge(lora.base, store=lora.store, settings=lora.settings)
    # The GGUF LoRA alone (pulled, not tuned here) runs but cannot be merged.
    gguf_only = pull(
        str(lora.store.weights_path(lora.adapter)),
        store=lora.store,
        settings=lora.settings,
        name="gguf-only",
    )
    parent = Parent(name=f"{BASE}:f16", digest=lora.base.weights.digest, relation="fine-tuned")
    gguf_only = gguf_only.model_copy(update={"parents": [parent]})
    lora.store.save(gguf_only)
    with pytest.raises(AdapterMismatch, match="no PEFT weights"):
        merge(gguf_only, store=lora.store, settings=lora.settings)
