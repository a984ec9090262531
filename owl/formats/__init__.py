"""Model file formats → ModelInfo. Detects the format by content, not by file name."""

from __future__ import annotations

from pathlib import Path

from owl.errors import ModelFormatError
from owl.formats.gguf import MAGIC as GGUF_MAGIC
from owl.formats.gguf import read_gguf
from owl.formats.hf_folder import read_hf_folder
from owl.formats.info import ModelInfo, human_bytes, human_count
from owl.formats.safetensors import is_safetensors, read_safetensors

__all__ = [
    "ModelInfo",
    "detect",
    "human_bytes",
    "human_count",
    "inspect",
    "not_a_regular_file",
]


def detect(path: Path) -> str:
    """The format at `path` from its content: "gguf", "safetensors" (a file) or "hf-folder".

    ModelFormatError if it is none of them.
    """
    if path.is_dir():
        return "hf-folder"
    if path.exists() and not path.is_file():
        raise ModelFormatError(not_a_regular_file(path))
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
    except OSError as err:
        raise ModelFormatError(f"cannot read {path}: {err.strerror}") from err
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if is_safetensors(path):
        return "safetensors"
    raise ModelFormatError(
        f"{path.name} is not a model file owl can read (no GGUF header, and not safetensors); "
        "owl runs .gguf files and Hugging Face model folders (config.json, *.safetensors): "
        "pull a GGUF, e.g. hf:Org/Repo-GGUF/model.Q4_K_M.gguf, or a model folder"
    )


def not_a_regular_file(path: Path) -> str:
    """Why a FIFO, socket or device is refused: reading one may never end (`mkfifo f.gguf`)."""
    return (
        f"{path} is not a regular file (a pipe, socket or device); give the path of a model "
        "file or of a model folder"
    )


def inspect(path: Path) -> ModelInfo:
    """Read the model file (or Hugging Face model folder) at `path` into a ModelInfo."""
    fmt = detect(path)
    if fmt == "gguf":
        return read_gguf(path)
    if fmt == "safetensors":
        return read_safetensors(path)
    return read_hf_folder(path)
