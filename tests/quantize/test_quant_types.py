"""owl.quantize.quant_types: every type in types.toml is one of llama.cpp's file types."""

from __future__ import annotations

import llama_cpp

from owl.quantize import find_type, quant_types


def test_every_type_is_a_llama_cpp_file_type() -> None:
    values = set()
    for name, kind in quant_types().items():
        assert kind.ftype == f"LLAMA_FTYPE_MOSTLY_{name}"
        values.add(kind.ftype_value())
        assert 1 < kind.bits < 9 and kind.description
    assert len(values) == len(quant_types())  # no two names for one file type
    for name in ("Q8_0", "Q6_K", "Q5_K_M", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K", "IQ4_XS"):
        assert name in quant_types()  # the types the issue names
    assert find_type("q4_k_m").ftype_value() == llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M
