"""Evaluations: how good a model is on a text, and how far a quantization moved it.

`perplexity` follows llama-perplexity's method; `kl_divergence` compares a model's
next-token distributions with a reference's on the same tokens. Both score GGUF models
from the store through llama.cpp, on the calling thread.
"""

from owl.evals.kld import KldResult, kl_divergence
from owl.evals.perplexity import PerplexityResult, perplexity
from owl.evals.text import read_text

__all__ = ["KldResult", "PerplexityResult", "kl_divergence", "perplexity", "read_text"]
