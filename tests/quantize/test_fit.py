"""owl fit: the best quantization for a memory budget, measured where owl has measured it."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.config import Settings, parse_size
from owl.engine.memory import kv_cache_bytes
from owl.formats import inspect
from owl.pull import pull
from owl.quantize import quantize
from owl.quantize.fit import best, fit
from owl.store import Store
from tests.support.cli import owl


@pytest.mark.parametrize(
    ("text", "size"),
    [("8GB", 8 << 30), ("8 GiB", 8 << 30), ("512M", 512 << 20), ("2.5g", int(2.5 * (1 << 30)))],
)
def test_sizes_parse(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "8 GX", "-1GB"])
def test_bad_sizes_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="8GB"):
        parse_size(text)


def test_the_best_fit_uses_what_the_store_measured(store: Store, settings: Settings) -> None:
    model = pull("smollm2", store=store, settings=settings)
    metadata = inspect(store.weights_path(model)).metadata
    # SmolLM2-135M: 30 layers, 576 wide, 9 heads sharing 3 K/V heads → 192 K/V values.
    assert kv_cache_bytes(metadata, ctx=2048) == 2 * 30 * 2048 * 192 * 2
    q8 = quantize(model, store=store, settings=settings, qtype="Q8_0")
    measured = {"perplexity": 21.0, "reference_perplexity": 20.8, "kld_mean": 0.007,
                "top1_agreement": 0.95, "text": "t.txt", "ctx": 256}  # fmt: skip
    store.save(q8.model_copy(update={"info": {**q8.info, "quality": measured}}))

    options = fit(model, store=store, ram=300 << 20, ctx=2048, metadata=metadata)
    chosen = best(options)
    assert chosen is not None and chosen.type == "Q8_0" and chosen.measured
    assert chosen.weights_bytes == q8.size and chosen.stored_as == "smollm2:q8_0"
    assert chosen.cost.startswith("measured: perplexity 21.000")
    others = [option for option in options if option.type != "Q8_0"]
    assert all(not option.measured and option.cost.startswith("published") for option in others)
    # Best quality first; nothing that needs an importance matrix is offered.
    bits = [option.weights_bytes for option in options if not option.measured]
    assert bits == sorted(bits, reverse=True)
    assert "IQ2_XXS" not in {option.type for option in options}

    tight = fit(model, store=store, ram=100 << 20, ctx=2048, metadata=metadata)
    assert best(tight) is None or best(tight).memory_bytes <= 100 << 20


def test_owl_fit_exits_1_when_nothing_fits(owl_env: Path) -> None:
    result = owl(owl_env, "fit", "smollm2", "--ram", "10MB")
    assert result.returncode == 1 and "nothing fits" in result.stdout
    fits = owl(owl_env, "fit", "smollm2", "--ram", "1GB", "--ctx", "2048", "--json")
    assert fits.returncode == 0 and '"best"' in fits.stdout
    bad = owl(owl_env, "fit", "smollm2", "--ram", "lots")
    assert bad.returncode == 2 and "8GB" in bad.stderr
