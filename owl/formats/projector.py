"""A vision GGUF's projector (llama.cpp's mmproj): what its metadata says of its image encoder.

llama.cpp's converter (`--mmproj`) writes the vision tower and the connector that maps its
output into the language model's embeddings as a GGUF of architecture "clip", whatever the
model family (SmolVLM, Qwen2.5-VL, Gemma 3, LLaVA): its facts are under `clip.*` keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from owl.errors import ModelFormatError

CLIP_ARCHITECTURE = "clip"
# Older converters wrote the projector type at the top level, newer ones under the vision
# tower (a file may have both an audio and a vision projector).
_TYPE_KEYS = ("clip.vision.projector_type", "clip.projector_type")


@dataclass(frozen=True)
class ProjectorFacts:
    """The vision encoder of a projector GGUF, as its metadata states it."""

    projector_type: str | None  # llama.cpp's name of the connector: "idefics3", "mlp", …
    image_size: int | None  # the square side, in pixels, the encoder sees an image at
    patch_size: int | None
    projection_dim: int | None  # the width of what it hands the language model (its n_embd)

    def describe(self) -> str:
        """'idefics3, 64×64 images in 8×8 patches, into 64-wide embeddings'."""
        parts = [self.projector_type or "unknown type"]
        if self.image_size:
            patches = f" in {self.patch_size}×{self.patch_size} patches" if self.patch_size else ""
            parts.append(f"{self.image_size}×{self.image_size} images{patches}")
        if self.projection_dim:
            parts.append(f"into {self.projection_dim}-wide embeddings")
        return ", ".join(parts)


def is_projector_file(name: str) -> bool:
    """Whether a file is named as llama.cpp's projectors are (mmproj-….gguf), a path or not."""
    base = PurePosixPath(name).name.lower()
    return base.endswith(".gguf") and "mmproj" in base


def is_projector(metadata: Mapping[str, Any]) -> bool:
    """Whether a GGUF's metadata is a projector's (llama.cpp's clip architecture)."""
    if metadata.get("general.architecture") == CLIP_ARCHITECTURE:
        return True
    return any(key.startswith(f"{CLIP_ARCHITECTURE}.") for key in metadata)


def projector_facts(metadata: Mapping[str, Any]) -> ProjectorFacts:
    """The facts of a projector GGUF's metadata (any missing one is None)."""

    def number(key: str) -> int | None:
        value = metadata.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    kind = next((metadata[key] for key in _TYPE_KEYS if isinstance(metadata.get(key), str)), None)
    return ProjectorFacts(
        projector_type=kind,
        image_size=number("clip.vision.image_size"),
        patch_size=number("clip.vision.patch_size"),
        projection_dim=number("clip.vision.projection_dim"),
    )


def check_projector(
    metadata: Mapping[str, Any], *, filename: str, embedding_length: int | None
) -> ProjectorFacts:
    """The projector's facts; ModelFormatError when the file is no projector, or one whose
    embeddings are not as wide as the language model's (`embedding_length`, its n_embd):
    llama.cpp would fail on the first image, or worse, read past a buffer."""
    if not is_projector(metadata):
        architecture = metadata.get("general.architecture") or "none"
        raise ModelFormatError(
            f"{filename} is not a vision projector: its architecture is {architecture!r}, "
            f"not {CLIP_ARCHITECTURE!r}. --mmproj takes llama.cpp's projector GGUF (usually "
            "named mmproj-….gguf, published beside the model's GGUF)"
        )
    facts = projector_facts(metadata)
    if embedding_length and facts.projection_dim and facts.projection_dim != embedding_length:
        raise ModelFormatError(
            f"{filename} projects images into {facts.projection_dim}-wide embeddings, but the "
            f"language model's are {embedding_length} wide: it is another model's projector. "
            "Use the mmproj file published with this model"
        )
    return facts
