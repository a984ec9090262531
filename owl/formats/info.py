"""ModelInfo: what owl knows of a model file, whatever its format."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ModelInfo(BaseModel):
    """One description of a model file, filled by the reader of its format."""

    format: str
    architecture: str | None = None
    name: str | None = None
    parameters: int | None = Field(default=None, description="Number of weights.")
    quantization: str | None = Field(default=None, description="The file type, e.g. Q4_1.")
    tensor_types: dict[str, int] = Field(default_factory=dict, description="Type → tensors.")
    context_length: int | None = None
    embedding_length: int | None = None
    block_count: int | None = None
    head_count: int | None = None
    vocab_size: int | None = None
    chat_template: str | None = None
    license: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict, description="Scalar metadata.")

    def summary(self) -> dict[str, Any]:
        """The few fields a manifest keeps so `owl list` need not reopen the file."""
        return self.model_dump(
            include={"architecture", "parameters", "quantization", "context_length"}
        )


def human_count(count: int | None) -> str:
    """135_000_000 → '135M'."""
    if count is None:
        return "-"
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f}{unit}" if value < 10 else f"{value:.0f}{unit}"
    return str(count)


def human_bytes(size: int) -> str:
    """98_362_432 → '93.8 MiB'."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
