"""owl.tune.train: training lowers the loss of the real SmolLM2, and a stopped run resumes
to the same adapter (on the tiny llama: how a run resumes does not depend on the model).

Small on purpose (threads 1, max-len 64, a few steps): each test trains for seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.errors import TuneError
from owl.tune import TuneOptions
from owl.tune.train import evaluate, lora_model, train
from tests.tune.conftest import TuneBase, adapter_tensors, encoded, tiny_dataset

pytestmark = pytest.mark.slow


def test_training_lowers_the_loss(tune_base: TuneBase, tmp_path: Path) -> None:
    items, pad_id = encoded(tune_base.folder, tiny_dataset(tmp_path / "train.jsonl", count=4))
    options = TuneOptions(max_steps=8, batch_size=2, lr=1e-3, dropout=0.0)
    before = evaluate(
        lora_model(tune_base.folder, options, "cpu"),
        items,
        batch_size=2,
        pad_id=pad_id,
        device="cpu",
    )
    result = train(
        tune_base.folder,
        items,
        options=options,
        run_dir=tmp_path / "run",
        pad_id=pad_id,
        identity={"test": 1},
        eval_items=items,
        threads=1,
    )
    assert result.steps == 8 and len(result.losses) == 8
    assert len(result.eval_losses) == 4  # one per epoch of 2 steps
    assert result.eval_losses[-1] < before - 0.5, (before, result.eval_losses)
    assert result.tokens > 0 and result.tokens_per_s > 0
    assert (result.adapter_dir / "adapter_model.safetensors").is_file()


def test_a_stopped_run_resumes_to_the_same_adapter(tiny_folder: Path, tmp_path: Path) -> None:
    # The tiny llama: resuming is the same on any model, and this trains three runs.
    items, pad_id = encoded(tiny_folder, tiny_dataset(tmp_path / "train.jsonl", count=6))
    common = {"batch_size": 2, "checkpoint_every": 2, "seed": 7}  # dropout on: RNG state matters

    def run(folder: Path, max_steps: int, resume: bool = False, identity: dict | None = None):
        return train(
            tiny_folder,
            items,
            options=TuneOptions(max_steps=max_steps, resume=resume, **common),
            run_dir=folder,
            pad_id=pad_id,
            identity=identity or {"data": "same"},
            threads=1,
        )

    whole = run(tmp_path / "whole", 5)  # crosses an epoch (3 steps) and a checkpoint
    first = run(tmp_path / "parts", 2)
    assert first.steps == 2
    second = run(tmp_path / "parts", 5, resume=True)
    assert second.resumed_from == 2 and second.steps == 5 and len(second.losses) == 3
    assert second.losses == pytest.approx(whole.losses[2:], abs=1e-4)
    expected, got = adapter_tensors(whole.adapter_dir), adapter_tensors(second.adapter_dir)
    assert expected.keys() == got.keys() and expected
    for key in expected:
        assert (expected[key] - got[key]).abs().max() < 1e-5, key
    # A checkpoint is not continued with other data or options.
    with pytest.raises(TuneError, match="other data or options"):
        run(tmp_path / "parts", 6, resume=True, identity={"data": "other"})
    with pytest.raises(TuneError, match="no checkpoint"):
        run(tmp_path / "nothing-here", 2, resume=True)
