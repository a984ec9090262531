"""The engine: load a stored model into a backend, for a capability, and use it.

`load(manifest, capability=…)` picks the backend from the registry (owl/engine/registry.py)
by the model's format and the capability asked for: a Model (chat, complete, score) or an
Embedder (embed). Both report their memory and occupancy. The contract a backend meets is
in owl/engine/backend.py.
"""

from __future__ import annotations

from owl.engine.backend import Backend, Capability, Loaded, Occupancy, TokenLogprob
from owl.engine.context_window import context_size
from owl.engine.embeddings import Embeddings
from owl.engine.llama.embedder import Embedder
from owl.engine.loading import load
from owl.engine.memory import OVERHEAD, estimate_memory, kv_cache_bytes
from owl.engine.model import Delta, Model, Usage
from owl.engine.registry import capabilities_of
from owl.engine.sampling import SamplingParams

__all__ = [
    "OVERHEAD",
    "Backend",
    "Capability",
    "Delta",
    "Embedder",
    "Embeddings",
    "Loaded",
    "Model",
    "Occupancy",
    "SamplingParams",
    "TokenLogprob",
    "Usage",
    "capabilities_of",
    "context_size",
    "estimate_memory",
    "kv_cache_bytes",
    "load",
]
