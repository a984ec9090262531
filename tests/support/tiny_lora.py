"""A real LoRA adapter on a tiny llama, in a store, for the adapter and merge tests.

    tiny llama folder (tiny_models.py, SmolLM2's tokenizer) ─► owl convert ─► tiny-llama:f16
    PEFT LoRA on the folder (lora_B random, so that it changes the outputs)
        ─► owl tune's export (llama.cpp's convert_lora_to_gguf.py) ─► tiny-lora (its base:
           tiny-llama:f16, with the PEFT files kept for merging)

Seconds, not minutes: only SmolLM2's tokenizer is read from the bundled GGUF (no weights).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from owl.config import Settings
from owl.pull import open_store
from owl.store import Manifest, ModelName, Store

TARGETS = ("q_proj", "v_proj", "down_proj")
BASE = "tiny-llama"
ADAPTER = "tiny-lora"


@dataclass
class TinyLora:
    settings: Settings
    store: Store
    base: Manifest  # tiny-llama:f16
    adapter: Manifest  # tiny-lora:latest
    folder: Path  # the base's Hugging Face folder
    peft: Path  # the PEFT adapter folder


def smollm2_tokenizer(work: Path, bundled: Path) -> Path:
    """SmolLM2's tokenizer files as transformers reads them from the bundled GGUF (once)."""
    folder = work / "smollm2-tokenizer"
    if (folder / "tokenizer.json").is_file():
        return folder
    from transformers import AutoTokenizer

    staging = work / "smollm2-tokenizer.partial"
    shutil.rmtree(staging, ignore_errors=True)
    AutoTokenizer.from_pretrained(str(bundled.parent), gguf_file=bundled.name).save_pretrained(
        staging
    )
    staging.rename(folder)
    return folder


def tiny_llama_folder(work: Path, bundled: Path) -> Path:
    """The tiny random-weight llama folder (tiny_models.py) with SmolLM2's tokenizer, built
    once in `work` (the session's base temp folder): a model to convert in seconds."""
    from tests.support.tiny_models import build_tiny_folder

    return build_tiny_folder("llama", work, smollm2_tokenizer(work, bundled))


def peft_adapter(base_folder: Path, dest: Path, *, seed: int = 1, std: float = 0.5) -> Path:
    """A PEFT LoRA (rank 4, alpha 8) on `base_folder` whose lora_B is random (`seed`, `std`):
    PEFT starts lora_B at zero, which would change nothing. Built once into `dest`."""
    if (dest / "adapter_model.safetensors").is_file():
        return dest
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(TARGETS), lora_dropout=0.0)
    peft_model = get_peft_model(model, config)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=std)
    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    peft_model.save_pretrained(staging)
    staging.rename(dest)
    return dest


def tiny_lora(work: Path, home: Path, bundled: Path, *, ctx: int = 256) -> TinyLora:
    """A store at `home` holding tiny-llama:f16 and its adapter tiny-lora (module doc).
    `work` keeps what every test of the session shares: folders, the converter, and the
    store itself, built once (two converter runs) and copied to each `home` that asks, so
    that each module still has a store of its own to change."""
    shared = work / "tiny-lora-store" / "owl-home"
    if not (shared / "manifests").is_dir():
        staging = work / "tiny-lora-store.partial"
        shutil.rmtree(staging, ignore_errors=True)
        _build(work, staging / "owl-home", bundled)
        staging.rename(shared.parent)
    # Snapshots are links into their own home's blobs: the copy builds its own on first use.
    shutil.copytree(shared, home, ignore=shutil.ignore_patterns("snapshots"))
    from tests.quantize.test_convert import shared_tools

    settings = Settings(home=home, ctx=ctx, threads=1, tools=shared_tools(work))
    store = open_store(settings)
    base = store.get(ModelName(BASE, "f16"))
    adapter = store.get(ModelName(ADAPTER, "latest"))
    folder = tiny_llama_folder(work, bundled)
    return TinyLora(settings, store, base, adapter, folder, work / "tiny-llama-lora")


def _build(work: Path, home: Path, bundled: Path) -> None:
    """tiny-llama:f16 converted and tiny-lora exported into a new store at `home`."""
    from owl.quantize.convert import convert
    from owl.tune.export import export_adapter
    from tests.quantize.test_convert import shared_tools

    settings = Settings(home=home, threads=1, tools=shared_tools(work))
    store = open_store(settings)
    folder = tiny_llama_folder(work, bundled)
    base = convert(folder, store=store, settings=settings, name=BASE)
    peft = peft_adapter(folder, work / "tiny-llama-lora")
    staging = home / "adapter-staging"  # export_adapter rewrites adapter_config.json
    shutil.copytree(peft, staging)
    export_adapter(
        staging,
        base=base,
        base_folder=folder,
        name=ModelName(ADAPTER, "latest"),
        store=store,
        settings=settings,
        info={},
    )
    shutil.rmtree(staging)
