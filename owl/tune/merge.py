"""Merge a LoRA adapter into its base: a full model in the store (`owl export NAME --merge`).

    base (HF folder: a stored safetensors model's snapshot, or a GGUF dequantized once,
    owl/tune/base.py) + the adapter's PEFT weights (its files of role "peft"/"peft-config",
    kept by owl tune) ─► PEFT merge_and_unload() ─► float32 safetensors folder
    ─► owl convert (f16 GGUF) ─► owl quantize (optional)

The merged model's lineage names the base and the adapter (relation "merged") and carries
the base's license; a quantization of it names the merged model, as `owl quantize` does.
A GGUF-only adapter (pulled, not tuned here) has no PEFT weights and is refused: merging
from the GGUF LoRA would mean undoing llama.cpp's tensor renaming per architecture.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from owl.config import Settings
from owl.engine.adapters import base_of, is_adapter
from owl.errors import AdapterMismatch, NameClash
from owl.store import Manifest, ModelName, RefKind, Source, Store, parse_name
from owl.store.manifest import Parent

RELATION = "merged"
# The adapter's files PEFT reads, by role (owl/tune/export.py stores them).
PEFT_ROLES = {"peft": "adapter_model.safetensors", "peft-config": "adapter_config.json"}

Status = Callable[[str], None]


def merged_name(adapter: Manifest, name: str | None, tag: str) -> ModelName:
    """`name` (tagged `tag` when it has none), else "<adapter>-merged:<tag>"."""
    if name is None:
        return ModelName(f"{adapter.name}-merged", tag)
    parsed = parse_name(name)
    return parsed if ":" in name else ModelName(parsed.name, tag)


def _peft_folder(adapter: Manifest, *, store: Store, work: Path) -> Path:
    files = {entry.role: entry for entry in adapter.files if entry.role in PEFT_ROLES}
    missing = sorted(set(PEFT_ROLES) - set(files))
    if missing:
        raise AdapterMismatch(
            f"adapter '{adapter.display_name}' has no PEFT weights ({', '.join(missing)}), only "
            "its GGUF LoRA, so owl cannot merge it; merge an adapter made by `owl tune`, or run "
            f"it unmerged: `owl run {adapter.display_name}`"
        )
    folder = work / "adapter"
    folder.mkdir()
    for role, filename in PEFT_ROLES.items():
        # Under the names PEFT looks for, whatever the stored file was called.
        (folder / filename).symlink_to(store.blobs.require(files[role].digest))
    return folder


def merge_folder(base_folder: Path, peft_folder: Path, out: Path) -> Path:
    """Write base + PEFT adapter, merged, as a float32 safetensors folder `out` (with the
    base's tokenizer and chat template); `out`."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        str(base_folder), dtype=torch.float32, local_files_only=True
    )
    merged = PeftModel.from_pretrained(model, str(peft_folder)).merge_and_unload()
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(str(base_folder), local_files_only=True).save_pretrained(out)
    return out


def merge(
    adapter: Manifest,
    *,
    store: Store,
    settings: Settings,
    name: str | None = None,
    quantize: str | None = None,
    status: Status | None = None,
) -> Manifest:
    """Merge the stored LoRA `adapter` into its base; the new model's manifest (module doc).

    The model is `name`, else "<adapter>-merged", tagged f16 or, with `quantize` (a type of
    `owl quantize`, e.g. Q4_K_M), that type (the f16 is kept beside it, as its parent).
    AdapterMismatch when `adapter` is not an adapter or has no PEFT weights; NameClash when
    the name is another model's.
    """
    from owl.quantize.convert import convert
    from owl.quantize.quantize import quantize as quantize_model
    from owl.scan.policy import require_loadable
    from owl.tune.base import base_folder

    if not is_adapter(adapter, store=store):
        raise AdapterMismatch(
            f"'{adapter.display_name}' is not a LoRA adapter, so there is nothing to merge; "
            "`owl export ADAPTER --merge` takes an adapter made by `owl tune`"
        )
    base = base_of(adapter, store=store)
    adapter = require_loadable(adapter, store=store, by="owl export --merge")
    base = require_loadable(base, store=store, by="owl export --merge")
    # With --quantize, `name` is the quantized model's; the f16 beside it shares its name.
    target = merged_name(adapter, name.split(":")[0] if name else None, "f16")
    if quantize is None and name is not None:
        target = merged_name(adapter, name, "f16")
    existing = store.find(target)
    if existing is not None and not _merged_from(existing, base, adapter):
        raise NameClash(
            f"a model named '{target}' already exists; export with --name OTHER, or "
            f"`owl rm {target}` first"
        )
    if existing is None:
        folder = base_folder(base, store=store, settings=settings, status=status)
        with tempfile.TemporaryDirectory(dir=store.blobs.root, prefix=".merge-") as work:
            peft = _peft_folder(adapter, store=store, work=Path(work))
            out = Path(work) / target.name
            if status:
                status(f"merging {adapter.display_name} into {base.display_name}")
            merge_folder(folder, peft, out)
            if base.license:
                (out / "README.md").write_text(f"---\nlicense: {base.license}\n---\n")
            if status:
                status("converting the merged model to GGUF")
            existing = convert(
                out, store=store, settings=settings, outtype="f16", name=str(target), status=status
            )
            shutil.rmtree(out, ignore_errors=True)
        existing = _record_lineage(existing, base=base, adapter=adapter, store=store)
    if quantize is None:
        return existing
    if status:
        status(f"quantizing to {quantize}")
    tagged = str(merged_name(adapter, name, quantize.lower()))
    return quantize_model(existing, store=store, settings=settings, qtype=quantize, name=tagged)


def _merged_from(model: Manifest, base: Manifest, adapter: Manifest) -> bool:
    return {(p.relation, p.digest) for p in model.parents} >= {
        (RELATION, base.weights.digest),
        (RELATION, adapter.weights.digest),
    }


def _record_lineage(
    manifest: Manifest, *, base: Manifest, adapter: Manifest, store: Store
) -> Manifest:
    parents = [
        Parent(
            name=model.display_name,
            digest=model.weights.digest,
            relation=RELATION,
            license=model.license,
            source=model.source,
        )
        for model in (base, adapter)
    ]
    updated = manifest.model_copy(
        update={
            # Derived by owl from stored models: pulled again by merging again.
            "source": Source(
                kind=RefKind.NAME, uri=adapter.display_name, revision=adapter.weights.digest
            ),
            "license": base.license or manifest.license,
            "license_sources": {"parent": base.license} if base.license else {},
            "parents": parents,
            "parameters": dict(base.parameters) | dict(adapter.parameters),
        }
    )
    store.save(updated)
    return updated


__all__ = ["PEFT_ROLES", "RELATION", "merge", "merge_folder", "merged_name"]
