"""A trained PEFT adapter → a GGUF LoRA (llama.cpp's own converter) → a model in the store.

The stored adapter is a model of its own, format "gguf", whose GGUF says general.type =
"adapter" and adapter.type = "lora". Its files: the GGUF (role "model", what llama.cpp
applies), the PEFT weights (role "peft") and their config (role "peft-config"), which
transformers applies or merges. Its lineage names the base, whose license carries over.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from owl.config import Settings
from owl.errors import ConversionError
from owl.pull import pull
from owl.quantize.converter import (
    DISTRIBUTION,
    RENAMED,
    RUNNER,
    Converter,
    check_dependencies,
    converter_env,
    ensure_converter,
)
from owl.store import FileEntry, Manifest, ModelName, RefKind, Source, Store
from owl.store.manifest import Parent

log = logging.getLogger(__name__)

RELATION = "fine-tuned"
PEFT_FILES = {"adapter_model.safetensors": "peft", "adapter_config.json": "peft-config"}
_TAIL = 15


def run_lora_converter(
    converter: Converter, adapter_dir: Path, base_folder: Path, outfile: Path, *, outtype: str
) -> str:
    """Convert the PEFT adapter in `adapter_dir` to the GGUF LoRA `outfile`; the log.

    `base_folder` is the base's Hugging Face folder (the converter reads its config).
    ConversionError with the converter's last lines when it fails.
    """
    check_dependencies()
    command = [
        sys.executable,
        "-c",
        RUNNER,  # the same wrapper as the HF converter: transformers 5's renamed keys
        str(converter.root),
        json.dumps(RENAMED),
        str(converter.lora_script),
        str(adapter_dir),
        "--base",
        str(base_folder),
        "--outfile",
        str(outfile),
        "--outtype",
        outtype,
    ]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        errors="replace",
        env=converter_env(converter),
        cwd=converter.root,
        stdin=subprocess.DEVNULL,
    )
    output = done.stdout + done.stderr
    if done.returncode != 0 or not outfile.is_file() or outfile.stat().st_size == 0:
        tail = " | ".join(line.strip() for line in output.splitlines()[-_TAIL:] if line.strip())
        raise ConversionError(
            f"llama.cpp's LoRA converter ({DISTRIBUTION} {converter.version}) could not convert "
            f"the adapter in {adapter_dir} (exit {done.returncode}): {tail or 'no output'}"
        )
    return output


def _portable_config(adapter_dir: Path, base: Manifest) -> None:
    """Name the base by its store name in adapter_config.json, not by a path on this disk."""
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    config["base_model_name_or_path"] = base.display_name
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def export_adapter(
    adapter_dir: Path,
    *,
    base: Manifest,
    base_folder: Path,
    name: ModelName,
    store: Store,
    settings: Settings,
    info: dict[str, Any],
    outtype: str = "f16",
    replace: bool = False,
) -> Manifest:
    """Convert the PEFT adapter in `adapter_dir` and store it as `name`, an adapter of `base`.

    `info` (training figures) is kept in the manifest under info["tune"]. With `replace`
    a stored model by that name (an earlier export of the same run) is replaced.
    """
    converter = ensure_converter(settings.tools_dir)
    _portable_config(adapter_dir, base)
    with tempfile.TemporaryDirectory(dir=store.blobs.root, prefix=".tune-") as work:
        outfile = Path(work) / f"{name.name}-lora-{outtype}.gguf"
        output = run_lora_converter(converter, adapter_dir, base_folder, outfile, outtype=outtype)
        log.debug("LoRA converter output:\n%s", output)
        if replace and store.find(name) is not None:
            store.remove(name)
        manifest = pull(str(outfile), store=store, settings=settings, name=str(name))
    extra = [
        FileEntry(
            role=role,
            filename=filename,
            digest=store.blobs.import_file(adapter_dir / filename),
            size=(adapter_dir / filename).stat().st_size,
        )
        for filename, role in PEFT_FILES.items()
    ]
    parent = Parent(
        name=base.display_name,
        digest=base.weights.digest,
        relation=RELATION,
        license=base.license,
        source=base.source,
    )
    updated = manifest.model_copy(
        update={
            "files": [*manifest.files, *extra],
            # Derived by owl from a stored model, as a quantization is: pulled by name only.
            "source": Source(
                kind=RefKind.NAME, uri=base.display_name, revision=base.weights.digest
            ),
            "license": base.license,
            "license_sources": {"parent": base.license} if base.license else {},
            "parents": [parent],
            "parameters": dict(base.parameters),
            "info": {**manifest.info, "adapter": "lora", "base": base.display_name, "tune": info},
        }
    )
    store.save(updated)
    from owl.scan.policy import ensure_scanned

    return ensure_scanned(updated, store=store)
