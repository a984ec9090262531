"""Model file formats → ModelInfo. Detects the format by content, not by file name."""

from __future__ import annotations

from pathlib import Path

from owl.errors import ModelFormatError
from owl.formats.gguf import MAGIC as GGUF_MAGIC
from owl.formats.gguf import read_gguf
from owl.formats.info import ModelInfo, human_bytes, human_count

__all__ = ["ModelInfo", "detect", "human_bytes", "human_count", "inspect"]


def detect(path: Path) -> str:
    """The format of the file at `path` from its first bytes; ModelFormatError if unknown."""
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as err:
        raise ModelFormatError(f"cannot read {path}: {err.strerror}") from err
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    raise ModelFormatError(
        f"{path.name} is not a model file owl can read (no GGUF header); "
        "owl runs .gguf files: pull a GGUF, e.g. hf:Org/Repo-GGUF/model.Q4_K_M.gguf"
    )


def inspect(path: Path) -> ModelInfo:
    """Read the model file at `path` into a ModelInfo."""
    fmt = detect(path)
    if fmt == "gguf":
        return read_gguf(path)
    raise AssertionError(f"no reader for {fmt}")
