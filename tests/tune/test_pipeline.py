"""owl.tune.pipeline (tune(), as `owl tune` runs it) end to end on the real SmolLM2: the
exported GGUF LoRA is stored with its lineage, scans clean and loads in llama.cpp; bad data,
a taken name and leftover checkpoints are refused before any training; --resume replaces.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.errors import NameClash, TrainingDataError, TuneError
from owl.tune import TuneOptions, run_dir, tune
from tests.support.cli import owl
from tests.tune.conftest import TuneBase, tiny_dataset

pytestmark = pytest.mark.slow


def test_owl_tune_stores_a_clean_gguf_lora_with_its_lineage(
    tune_base: TuneBase, tmp_path: Path
) -> None:
    data = tiny_dataset(tmp_path / "train.jsonl")
    held_out = tiny_dataset(tmp_path / "eval.jsonl", count=4)  # each example costs a forward
    home = tune_base.settings.home
    done = owl(
        home,
        "tune",
        "smollm2",
        "--data",
        str(data),
        "--eval",
        str(held_out),
        "--max-steps",
        "2",
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
    assert figures["steps"] == 2 and figures["rank"] == 8 and figures["examples"] == 20
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
    assert "LoRA of smollm2 (rank 8, 2 steps" in " ".join(shown.stdout.split())

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


def test_resume_through_tune_replaces_the_stored_adapter(
    tune_base: TuneBase, tmp_path: Path
) -> None:
    data = tiny_dataset(tmp_path / "train.jsonl", count=8)
    # One step, then a second resumed from its checkpoint: each SmolLM2 step takes seconds.
    common = {"batch_size": 2, "max_len": 64, "checkpoint_every": 1}
    stage = {"store": tune_base.store, "settings": tune_base.settings, "name": "resumed"}
    first = tune(tune_base.base, data=data, options=TuneOptions(max_steps=1, **common), **stage)
    assert first.info["tune"]["steps"] == 1 and first.info["tune"]["resumed_from"] == 0
    # Other data is another run: refused before training.
    other = tiny_dataset(tmp_path / "other.jsonl", count=5)
    with pytest.raises(TuneError, match="other data or options"):
        tune(
            tune_base.base,
            data=other,
            options=TuneOptions(max_steps=2, resume=True, **common),
            **stage,
        )
    second = tune(
        tune_base.base,
        data=data,
        options=TuneOptions(max_steps=2, resume=True, **common),
        **stage,
    )
    assert second.info["tune"]["steps"] == 2 and second.info["tune"]["resumed_from"] == 1
    assert second.weights.digest != first.weights.digest
    [stored] = [m for m in tune_base.store.list() if m.name == "resumed"]
    assert stored.weights.digest == second.weights.digest
    assert not tune_base.store.blobs.has(first.weights.digest)  # the replaced GGUF is gone
