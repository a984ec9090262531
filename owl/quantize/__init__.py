"""Quantization: llama.cpp's quantizer over stored GGUF models, into new store entries."""

from owl.quantize.imatrix import Imatrix, load_imatrix
from owl.quantize.quant_types import QuantType, find_type, quant_types
from owl.quantize.quantize import quantize

__all__ = ["Imatrix", "QuantType", "find_type", "load_imatrix", "quant_types", "quantize"]
