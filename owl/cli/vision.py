"""What `owl show` says of a vision model: its projector (mmproj) and its capabilities."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from owl.engine import Capability, capabilities_of
from owl.formats import human_bytes, inspect
from owl.formats.projector import projector_facts
from owl.store import Manifest, Store
from owl.store.lock import locked_model, read_lock, write_lock

# A capability by the word Ollama and LM Studio users know it by, where they have one.
_WORDS = {Capability.SEE: "vision"}


def capability_words(manifest: Manifest, *, store: Store) -> list[str]:
    """The model's capabilities, sorted, SEE as "vision"."""
    found = capabilities_of(manifest, store=store)
    return sorted(_WORDS.get(capability, capability.value) for capability in found)


def projector_details(manifest: Manifest, *, store: Store) -> dict[str, Any] | None:
    """The projector file and its vision encoder's facts (from its GGUF metadata); None for
    a model without one."""
    entry = manifest.projector
    path = store.projector_path(manifest)
    if entry is None or path is None:
        return None
    facts = projector_facts(inspect(path).metadata)
    source = manifest.projector_source or manifest.source
    return {
        "file": entry.filename,
        "size": entry.size,
        "digest": entry.digest,
        "source": source.model_dump(mode="json"),
        "projector_type": facts.projector_type,
        "image_size": facts.image_size,
        "patch_size": facts.patch_size,
        "projection_dim": facts.projection_dim,
        "description": facts.describe(),
    }


def projector_cell(details: dict[str, Any]) -> str:
    """'mmproj-x-f16.gguf (1.2 MB): idefics3, 64×64 images in 8×8 patches, …'."""
    return f"{details['file']} ({human_bytes(details['size'])}): {details['description']}"


def repin(manifest: Manifest, lock_file: Path) -> bool:
    """Pin the model's files anew in `lock_file` where it pins this model with other files
    (a projector was just added to it, with --mmproj): whether it did."""
    if not lock_file.is_file():
        return False
    lock = read_lock(lock_file)
    pinned = lock.models.get(manifest.display_name)
    if pinned is None or pinned.files == manifest.files:
        return False
    lock.models[manifest.display_name] = locked_model(manifest)
    write_lock(lock_file, lock)
    return True
