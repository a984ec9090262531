"""The base model as transformers trains it: a Hugging Face folder, its tokenizer, its template.

A stored safetensors model is its snapshot folder (Store.model_dir). A stored GGUF is
dequantized by transformers (`gguf_file=`) into float32 safetensors once, kept under
OWL_HOME/cache/dequantized/<weights sha256>/ for every later run (and for the LoRA
converter's `--base`, which reads its config).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock

from owl.config import Settings
from owl.engine.adapters import is_adapter
from owl.engine.template import ChatTemplate
from owl.errors import TuneError
from owl.store import Manifest, Store

log = logging.getLogger(__name__)

Status = Callable[[str], None]


def dequantized_dir(settings: Settings, digest: str) -> Path:
    """Where the dequantized folder of the GGUF with weights `digest` is kept."""
    from owl.store.ref import validate_digest

    return settings.home / "cache" / "dequantized" / validate_digest(digest).removeprefix("sha256:")


def dequantize(gguf: Path, target: Path, *, chat_template: str | None = None) -> Path:
    """Write the GGUF `gguf` as a float32 safetensors folder `target` (atomically); `target`.

    `chat_template` (the GGUF's own) is written into the tokenizer's config when given.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        if chat_template:
            tokenizer.chat_template = chat_template
        # transformers refuses to save a model it loaded from a GGUF ("quantized with gguf"),
        # though its weights are plain float32 tensors by now: drop that mark.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.chmod(0o755)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def base_folder(
    manifest: Manifest, *, store: Store, settings: Settings, status: Status | None = None
) -> Path:
    """A Hugging Face folder of the stored model `manifest` that transformers can train."""
    if is_adapter(manifest, store=store):
        raise TuneError(
            f"'{manifest.display_name}' is a LoRA adapter, not a model; tune its base "
            f"({', '.join(p.name for p in manifest.parents) or 'unknown'}) instead"
        )
    if manifest.format == "safetensors":
        from owl.formats.hf_folder import check_no_remote_code, list_folder

        folder = store.model_dir(manifest)
        check_no_remote_code(list_folder(folder))
        return folder
    if manifest.format != "gguf":
        raise TuneError(
            f"owl tune trains GGUF or safetensors models; '{manifest.display_name}' is "
            f"{manifest.format}"
        )
    target = dequantized_dir(settings, manifest.weights.digest)
    if (target / "config.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / "config.json").is_file():
            return target
        if status:
            status(f"dequantizing {manifest.display_name} for training (once)")
        gguf = store.weights_path(manifest)
        # transformers picks the reader by the file's name: give it one ending in .gguf.
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".link-") as work:
            link = Path(work) / "model.gguf"
            link.symlink_to(gguf)
            template = store.read_info(manifest).chat_template
            try:
                dequantize(link, target, chat_template=template)
            except (ValueError, KeyError, RuntimeError, OSError) as err:
                raise TuneError(
                    f"transformers cannot load '{manifest.display_name}' from its GGUF ({err}); "
                    "pull the model's safetensors folder (`owl pull ./folder`) and tune that"
                ) from err
    return target


def load_tokenizer(folder: Path) -> Any:
    """The base's Hugging Face tokenizer (local files only, no remote code)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (ValueError, OSError) as err:
        raise TuneError(f"cannot load the tokenizer of {folder}: {err}") from err


def chat_template(tokenizer: Any) -> ChatTemplate:
    """The base's own chat template (ChatML when it has none), in owl's sandbox."""
    source = tokenizer.chat_template if isinstance(tokenizer.chat_template, str) else None
    return ChatTemplate(
        source, bos_token=tokenizer.bos_token or "", eos_token=tokenizer.eos_token or ""
    )
