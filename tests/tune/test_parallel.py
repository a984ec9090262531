"""owl.tune.parallel: two processes (gloo on loopback) take the steps one process takes."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from owl.errors import TuneError
from owl.tune import TuneOptions
from owl.tune.train import train
from tests.tune.conftest import adapter_tensors, encoded, tiny_dataset

pytestmark = pytest.mark.slow


def test_two_processes_take_the_steps_of_one(tiny_folder: Path, tmp_path: Path) -> None:
    from owl.tune.parallel import train_parallel

    # The tiny llama: splitting the steps is the same on any model, and each of the two
    # processes loads it in no time (SmolLM2 took each of them seconds).
    items, pad_id = encoded(tiny_folder, tiny_dataset(tmp_path / "train.jsonl", count=6))
    # Dropout off: the processes draw their own masks. Batches of 4 over 6 examples: the
    # epoch's second batch (2 examples) is split 1 + 1, and a third step starts epoch 2.
    # threads=1 in every process (train pins torch's intra-op threads): both runs are
    # bit-for-bit repeatable, whatever the machine's load.
    steps = 3
    options = TuneOptions(max_steps=steps, batch_size=4, dropout=0.0, lr=1e-3, seed=3)
    common = {"options": options, "pad_id": pad_id, "identity": {"data": "same"}, "threads": 1}
    common["eval_items"] = items  # after step 2 (the epoch's end) and after step 3
    one = train(tiny_folder, items, run_dir=tmp_path / "one", **common)
    two = train_parallel(tiny_folder, items, nproc=2, run_dir=tmp_path / "two", **common)
    # Exact: the same steps over the same examples (a skipped share would lose tokens).
    assert two.steps == one.steps == steps and len(two.losses) == steps
    assert two.tokens == one.tokens  # counted over both processes' shares
    assert len(two.eval_losses) == len(one.eval_losses) == 2

    # Not exact: the two runs sum the same float32 terms in another order (two shares,
    # then the all-reduce), so they differ by rounding. A sum of n float32 terms is off by
    # about sqrt(n)·u relative (u = 2**-24; errors of random sign, Higham & Mary 2019),
    # two orders by sqrt(n)·eps (eps = 2**-23). n: the longest chain of accumulations
    # behind one loss or gradient element — forward and backward through each layer's
    # widest reductions (hidden, intermediate), the softmax over the vocabulary and the
    # batch's tokens. Each of the `steps` updates, and the forward of the loss compared,
    # adds at most one such relative error (Adam's step is the gradient over its running
    # RMS, so relative gradient errors pass through 1:1), hence `drift`: about 2e-4 here.
    # Measured on the adapters below: 1e-5 for this run; 2e-3 when the gradients are
    # averaged instead of summed (Adam nearly cancels the factor, its epsilon does not);
    # 0.7 when a share's gradient is dropped.
    config = json.loads((tiny_folder / "config.json").read_text())
    widest = config["hidden_size"] + config["intermediate_size"]
    n = 2 * config["num_hidden_layers"] * widest + config["vocab_size"]
    n += options.batch_size * 64  # the batch's tokens at most (max_len of encoded())
    drift = (steps + 1) * math.sqrt(n) * 2**-23
    loss_scale = max(one.losses + one.eval_losses)  # the errors are relative to the start
    assert two.losses == pytest.approx(one.losses, rel=0, abs=drift * loss_scale)
    assert two.eval_losses == pytest.approx(one.eval_losses, rel=0, abs=drift * loss_scale)
    # The adapters, by the weight change each makes (B @ A, 0 before training; LoRA's scale
    # cancels in the ratio), relative to its norm over all modules. Not element by element:
    # Adam moves an element by about lr whatever the size of its gradient, so an element
    # whose gradient is within rounding of zero may go either way; few do, and the norm
    # hardly feels them.
    expected, got = adapter_delta(one.adapter_dir), adapter_delta(two.adapter_dir)
    assert expected.keys() == got.keys() and expected
    assert _norm(expected[key] - got[key] for key in expected) < drift * _norm(expected.values())
    with pytest.raises(TuneError, match="smaller than --nproc"):
        train_parallel(
            tiny_folder,
            items,
            nproc=4,
            run_dir=tmp_path / "three",
            **{**common, "options": TuneOptions(batch_size=2)},
        )


def adapter_delta(folder: Path) -> dict:
    """What the adapter adds to each module's weight, B @ A (in float64), by module."""
    tensors = adapter_tensors(folder)
    return {
        key.removesuffix(".lora_A.weight"): (
            tensors[key.replace("lora_A", "lora_B")].double() @ tensors[key].double()
        )
        for key in tensors
        if key.endswith(".lora_A.weight")
    }


def _norm(tensors: Iterable[Any]) -> float:
    """The Frobenius norm of all `tensors` together."""
    return math.sqrt(sum(float((tensor**2).sum()) for tensor in tensors))
