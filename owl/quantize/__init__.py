"""Quantization: llama.cpp's quantizer over stored GGUF models, into new store entries."""

from owl.quantize.imatrix import Imatrix, load_imatrix
from owl.quantize.quantize import QuantType, find_type, quant_types, quantize

__all__ = ["Imatrix", "QuantType", "find_type", "load_imatrix", "quant_types", "quantize"]
