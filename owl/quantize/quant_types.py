"""The quantization types owl offers (types.toml, beside this file): llama.cpp's file types
with their nominal bits per weight and whether they need an importance matrix.
"""

from __future__ import annotations

import tomllib
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from owl.errors import QuantizationError

TYPES_FILE = Path(__file__).with_name("types.toml")


class QuantType(BaseModel):
    """One quantization type (a llama.cpp file type), as types.toml describes it."""

    name: str
    ftype: str
    bits: float
    imatrix: Literal["required", "recommended", "no"]
    description: str

    @property
    def tag(self) -> str:
        """The store tag of a model quantized to this type: q4_k_m."""
        return self.name.lower()

    def ftype_value(self) -> int:
        """llama.cpp's enum value for this type (its `llama_ftype`)."""
        import llama_cpp

        return int(getattr(llama_cpp, self.ftype))


@cache
def quant_types() -> dict[str, QuantType]:
    """The types owl offers, by name (Q8_0, Q4_K_M, …), in types.toml's order."""
    data = tomllib.loads(TYPES_FILE.read_text())
    return {name: QuantType(name=name, **fields) for name, fields in data["types"].items()}


def find_type(name: str) -> QuantType:
    """The type called `name` (any case); QuantizationError listing the types otherwise."""
    found = quant_types().get(name.strip().upper())
    if found is None:
        raise QuantizationError(
            f"unknown quantization type {name!r}; owl offers {', '.join(quant_types())} "
            "(Q4_K_M is the usual choice, Q8_0 the near-lossless one)"
        )
    return found


def needs_imatrix(kind: QuantType) -> QuantizationError:
    """The error for a type quantized without the importance matrix it requires."""
    return QuantizationError(
        f"{kind.name} needs an importance matrix: let owl compute one from a text like the "
        "model's use with --calibrate TEXT, or pass one made by llama.cpp's llama-imatrix with "
        "--imatrix FILE; or choose a type that needs none, e.g. Q4_K_M or Q3_K_M"
    )
