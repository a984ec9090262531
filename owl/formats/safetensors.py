"""Read a safetensors file's header: tensor names, dtypes and shapes, never tensor data.

The header is untrusted: its length is bounded before it is read, and anything that is not
the format (a non-object, an entry without a dtype or a shape of counts) is a
ModelFormatError that names the file. owl.scan.safetensors checks the whole contract
(ranges, overlaps); this reader only needs what a person reads: how many weights, of which
types.
"""

from __future__ import annotations

import json
import math
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from owl.errors import ModelFormatError
from owl.formats.info import ModelInfo

MAX_HEADER = 100_000_000  # what the safetensors reader itself accepts
METADATA_KEY = "__metadata__"
_MAX_METADATA_STRING = 512


@dataclass
class TensorCounts:
    """What the headers of one or more safetensors files hold, added up."""

    parameters: int = 0
    tensors: int = 0
    types: Counter[str] = field(default_factory=Counter)  # dtype → tensors
    weights_by_type: Counter[str] = field(default_factory=Counter)  # dtype → elements
    metadata: dict[str, str] = field(default_factory=dict)

    def add(self, header: dict[str, Any]) -> None:
        for name, entry in header.items():
            if name == METADATA_KEY:
                if isinstance(entry, dict):
                    self.metadata.update(
                        {
                            f"safetensors.{key}"[:128]: value[:_MAX_METADATA_STRING]
                            for key, value in entry.items()
                            if isinstance(key, str) and isinstance(value, str)
                        }
                    )
                continue
            dtype, elements = _tensor(name, entry)
            self.parameters += elements
            self.tensors += 1
            self.types[dtype] += 1
            self.weights_by_type[dtype] += elements

    @property
    def main_type(self) -> str | None:
        """The dtype that holds most of the weights (F32 norms beside BF16 matrices: BF16)."""
        return self.weights_by_type.most_common(1)[0][0] if self.weights_by_type else None


def _tensor(name: str, entry: Any) -> tuple[str, int]:
    if not isinstance(entry, dict):
        raise ValueError(f"tensor {name[:80]!r} is not an object")
    dtype, shape = entry.get("dtype"), entry.get("shape")
    if not isinstance(dtype, str) or not isinstance(shape, list):
        raise ValueError(f"tensor {name[:80]!r} has no dtype or shape")
    if not all(isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape):
        raise ValueError(f"tensor {name[:80]!r} has a shape that is not a list of sizes")
    return dtype[:32], math.prod(shape)


def read_header(path: Path) -> dict[str, Any]:
    """The JSON header of the safetensors file at `path`; ModelFormatError if it is not one."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            head = handle.read(8)
            if len(head) < 8:
                raise ValueError("too short for a safetensors header")
            (length,) = struct.unpack("<Q", head)
            if length > MAX_HEADER or length > size - 8:
                raise ValueError(f"its header claims {length:,} bytes")
            raw = handle.read(length)
    except OSError as err:
        raise ModelFormatError(f"cannot read {path.name}: {err.strerror}") from err
    except ValueError as err:
        raise ModelFormatError(f"{path.name} is not a safetensors file: {err}") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ModelFormatError(f"{path.name} has a header that is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise ModelFormatError(f"{path.name} has a header that is not a JSON object")
    return header


def count_tensors(paths: list[Path], *, names: list[str] | None = None) -> TensorCounts:
    """Add up the headers of the safetensors files at `paths` (shards of one model).

    `names` are the files' own names for messages (store blobs are named by digest).
    """
    counts = TensorCounts()
    for index, path in enumerate(paths):
        shown = names[index] if names is not None else path.name
        header = read_header(path)
        try:
            counts.add(header)
        except ValueError as err:
            raise ModelFormatError(f"{shown} is not a valid safetensors file: {err}") from None
    return counts


def read_safetensors(path: Path) -> ModelInfo:
    """A lone safetensors file → ModelInfo (weights and types only: it has no config)."""
    counts = count_tensors([path])
    return ModelInfo(
        format="safetensors",
        parameters=counts.parameters,
        quantization=counts.main_type,
        tensor_types=dict(counts.types),
        metadata=counts.metadata,
    )


def is_safetensors(path: Path) -> bool:
    """Whether the file at `path` starts like a safetensors file (a length, then '{')."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            head = handle.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    (length,) = struct.unpack_from("<Q", head)
    return 2 <= length <= size - 8 and head[8:9] == b"{"
