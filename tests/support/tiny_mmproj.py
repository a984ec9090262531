"""A tiny but real projector GGUF (llama.cpp's mmproj: architecture "clip"), written with `gguf`.

Its metadata has the keys llama.cpp's converter writes for a vision projector (those of
tests/support/tiny_vlm.py's converted SmolVLM): enough for owl to store, check and describe
it. `projection_dim` is the language model's width it projects into (write_tiny_gguf's is 8).
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SIZE = 64
PATCH_SIZE = 8
PROJECTOR_TYPE = "idefics3"


def write_tiny_mmproj(
    path: Path, *, projection_dim: int = 8, rows: int = 4, architecture: str = "clip"
) -> Path:
    """Write a projector GGUF; `rows` changes its bytes, `architecture` other than "clip"
    (with no clip.* keys) makes a GGUF that is no projector."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-mmproj")
    writer.add_type("mmproj")
    if architecture == "clip":
        writer.add_bool("clip.has_vision_encoder", True)
        writer.add_uint32("clip.vision.projection_dim", projection_dim)
        writer.add_uint32("clip.vision.image_size", IMAGE_SIZE)
        writer.add_uint32("clip.vision.patch_size", PATCH_SIZE)
        writer.add_uint32("clip.vision.embedding_length", projection_dim)
        writer.add_string("clip.projector_type", PROJECTOR_TYPE)
    weights = np.arange(rows * projection_dim, dtype=np.float32).reshape(rows, projection_dim)
    writer.add_tensor("mm.model.fc.weight", weights)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
