"""A tiny but real GGUF file (llama architecture, float32 tensors), written with `gguf`."""

from __future__ import annotations

from pathlib import Path


def write_tiny_gguf(
    path: Path, *, name: str = "tiny-test", rows: int = 32, license: str | None = None
) -> Path:
    """Write a GGUF that owl.formats reads; `rows` changes its bytes (and its digest)."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name(name)
    if license is not None:
        writer.add_license(license)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_tensor("token_embd.weight", np.arange(rows * 8, dtype=np.float32).reshape(rows, 8))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
