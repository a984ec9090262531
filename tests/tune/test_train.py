"""owl tune end to end on the real SmolLM2: training lowers the loss, resume is exact, and the
exported GGUF LoRA is stored with its lineage, scans clean and loads in llama.cpp.

Small on purpose (threads 1, max-len 64, a few steps): each test trains for seconds.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from owl.errors import NameClash, TrainingDataError, TuneError
from owl.tune import TuneOptions, run_dir, tune
from owl.tune.base import chat_template, load_tokenizer
from owl.tune.data import Encoded, Encoder, read_examples
from owl.tune.train import evaluate, lora_model, train
from tests.support.cli import owl
from tests.tune.conftest import TuneBase

pytestmark = pytest.mark.slow

NAMES = ("Ada", "Bob", "Cy", "Dee", "Eve")


def tiny_dataset(path: Path, count: int = 20) -> Path:
    """`count` examples of all three shapes: names into a fixed JSON shape."""
    lines = []
    for index in range(count):
        name = NAMES[index % len(NAMES)]
        answer = json.dumps({"name": name})
        if index % 3 == 0:
            lines.append(
                {
                    "messages": [
                        {"role": "user", "content": f"Who is {name}?"},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
        elif index % 3 == 1:
            lines.append({"prompt": f"Name: {name}\nJSON:", "completion": f" {answer}"})
        else:
            lines.append({"text": f"{name} is written {answer}."})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def encoded(tune_base: TuneBase, path: Path, max_len: int = 64) -> tuple[list[Encoded], int]:
    tokenizer = load_tokenizer(tune_base.folder)
    encoder = Encoder(tokenizer, chat_template(tokenizer), max_len=max_len)
    return encoder.encode_all(read_examples(path), path=path), tokenizer.eos_token_id


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def test_training_lowers_the_loss(tune_base: TuneBase, tmp_path: Path) -> None:
    items, pad_id = encoded(tune_base, tiny_dataset(tmp_path / "train.jsonl", count=4))
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


def test_a_stopped_run_resumes_to_the_same_adapter(tune_base: TuneBase, tmp_path: Path) -> None:
    items, pad_id = encoded(tune_base, tiny_dataset(tmp_path / "train.jsonl", count=6))
    common = {"batch_size": 2, "checkpoint_every": 2, "seed": 7}  # dropout on: RNG state matters

    def run(folder: Path, max_steps: int, resume: bool = False, identity: dict | None = None):
        return train(
            tune_base.folder,
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


def test_owl_tune_stores_a_clean_gguf_lora_with_its_lineage(
    tune_base: TuneBase, tmp_path: Path
) -> None:
    data = tiny_dataset(tmp_path / "train.jsonl")
    home = tune_base.settings.home
    done = owl(
        home,
        "tune",
        "smollm2",
        "--data",
        str(data),
        "--eval",
        str(data),
        "--max-steps",
        "4",
        "--batch-size",
        "2",
        "--max-len",
        "64",
        "--name",
        "names",
        "--json",
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert manifest["name"] == "names" and manifest["format"] == "gguf"
    assert manifest["info"]["adapter"] == "lora" and manifest["info"]["base"] == "smollm2"
    figures = manifest["info"]["tune"]
    assert figures["steps"] == 4 and figures["rank"] == 8 and figures["examples"] == 20
    assert figures["train_loss"] > 0 and figures["eval_loss"] > 0 and figures["tokens_per_s"] > 0
    [parent] = manifest["parents"]
    assert parent["name"] == "smollm2" and parent["relation"] == "fine-tuned"
    assert parent["digest"] == tune_base.base.weights.digest
    assert parent["license"] == manifest["license"] == tune_base.base.license == "apache-2.0"
    roles = {entry["role"]: entry["filename"] for entry in manifest["files"]}
    assert roles == {
        "model": "names-lora-f16.gguf",
        "peft": "adapter_model.safetensors",
        "peft-config": "adapter_config.json",
    }

    stored = tune_base.store.get(_name("names"))
    gguf = tune_base.store.weights_path(stored)
    from owl.formats import inspect

    metadata = inspect(gguf).metadata
    assert metadata["general.type"] == "adapter" and metadata["adapter.type"] == "lora"
    assert metadata["adapter.lora.alpha"] == 16.0
    config = json.loads(
        tune_base.store.model_dir(stored).joinpath("adapter_config.json").read_text()
    )
    assert config["base_model_name_or_path"] == "smollm2"  # no path of this machine

    listed = owl(home, "list")
    assert any("names" in line and "gguf LoRA" in line for line in listed.stdout.splitlines())
    shown = owl(home, "show", "names")
    assert "LoRA of smollm2 (rank 8, 4 steps" in " ".join(shown.stdout.split())

    scanned = owl(home, "scan", "names")
    assert scanned.returncode == 0, scanned.stdout + scanned.stderr
    assert "clean" in scanned.stdout and "unsafe" not in scanned.stdout

    assert _lora_loads(tune_base.store.weights_path(tune_base.base), gguf)

    # The name is taken now; the checkpoints stay for --resume.
    with pytest.raises(NameClash, match="--resume to continue its run"):
        tune(
            tune_base.base,
            data=data,
            name="names",
            options=TuneOptions(max_steps=4),
            store=tune_base.store,
            settings=tune_base.settings,
        )
    assert any((run_dir(tune_base.settings, _name("names")) / "checkpoints").iterdir())


def test_bad_data_fails_before_any_training(tune_base: TuneBase, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"prompt": "no completion"}\n')
    done = owl(tune_base.settings.home, "tune", "smollm2", "--data", str(bad), timeout=300)
    assert done.returncode == 1
    assert "line 2: unknown shape" in done.stderr
    with pytest.raises(TrainingDataError, match="line 2"):
        tune(
            tune_base.base,
            data=bad,
            options=TuneOptions(),
            store=tune_base.store,
            settings=tune_base.settings,
        )
    assert not (tune_base.settings.home / "tune").exists()


def test_leftover_checkpoints_need_resume_or_removal(tune_base: TuneBase, tmp_path: Path) -> None:
    checkpoint = run_dir(tune_base.settings, _name("smollm2-lora")) / "checkpoints" / "step-000002"
    checkpoint.mkdir(parents=True)
    (checkpoint / "state.json").write_text("{}")
    with pytest.raises(TuneError, match="add --resume to continue it"):
        tune(
            tune_base.base,
            data=tiny_dataset(tmp_path / "train.jsonl"),
            options=TuneOptions(),
            store=tune_base.store,
            settings=tune_base.settings,
        )


def _name(text: str):  # noqa: ANN202
    from owl.store import parse_name

    return parse_name(text)


def _lora_loads(base_gguf: Path, adapter_gguf: Path) -> bool:
    """Whether llama.cpp (llama-cpp-python's low-level API) accepts the adapter for the base."""
    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    model = llama_cpp.llama_model_load_from_file(str(base_gguf).encode(), params)
    assert model, "the base did not load"
    try:
        adapter = llama_cpp.llama_adapter_lora_init(model, str(adapter_gguf).encode())
        if not adapter:
            return False
        llama_cpp.llama_adapter_lora_free(adapter)
        return True
    finally:
        llama_cpp.llama_model_free(model)


def test_two_processes_take_the_steps_of_one(tune_base: TuneBase, tmp_path: Path) -> None:
    from owl.tune.parallel import train_parallel

    items, pad_id = encoded(tune_base, tiny_dataset(tmp_path / "train.jsonl", count=6))
    # Dropout off: the processes draw their own masks. Batches of 4 over 6 examples: the
    # epoch's second batch (2 examples) is split 1 + 1, and a third step starts epoch 2.
    # threads=1 in every process (train pins torch's intra-op threads): both runs are
    # bit-for-bit repeatable, whatever the machine's load.
    steps = 3
    options = TuneOptions(max_steps=steps, batch_size=4, dropout=0.0, lr=1e-3, seed=3)
    common = {"options": options, "pad_id": pad_id, "identity": {"data": "same"}, "threads": 1}
    common["eval_items"] = items  # after step 2 (the epoch's end) and after step 3
    one = train(tune_base.folder, items, run_dir=tmp_path / "one", **common)
    two = train_parallel(tune_base.folder, items, nproc=2, run_dir=tmp_path / "two", **common)
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
    config = json.loads((tune_base.folder / "config.json").read_text())
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
            tune_base.folder,
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


def test_resume_through_tune_replaces_the_stored_adapter(
    tune_base: TuneBase, tmp_path: Path
) -> None:
    data = tiny_dataset(tmp_path / "train.jsonl", count=8)
    common = {"batch_size": 2, "max_len": 64, "checkpoint_every": 2}
    stage = {"store": tune_base.store, "settings": tune_base.settings, "name": "resumed"}
    first = tune(tune_base.base, data=data, options=TuneOptions(max_steps=2, **common), **stage)
    assert first.info["tune"]["steps"] == 2 and first.info["tune"]["resumed_from"] == 0
    # Other data is another run: refused before training.
    other = tiny_dataset(tmp_path / "other.jsonl", count=5)
    with pytest.raises(TuneError, match="other data or options"):
        tune(
            tune_base.base,
            data=other,
            options=TuneOptions(max_steps=4, resume=True, **common),
            **stage,
        )
    second = tune(
        tune_base.base,
        data=data,
        options=TuneOptions(max_steps=4, resume=True, **common),
        **stage,
    )
    assert second.info["tune"]["steps"] == 4 and second.info["tune"]["resumed_from"] == 2
    assert second.weights.digest != first.weights.digest
    [stored] = [m for m in tune_base.store.list() if m.name == "resumed"]
    assert stored.weights.digest == second.weights.digest
    assert not tune_base.store.blobs.has(first.weights.digest)  # the replaced GGUF is gone
