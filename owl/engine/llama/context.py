"""A llama.cpp context over a loaded model, made for generation, embeddings or scoring.

Each purpose sets llama.cpp's parameters its own way, for reasons given where they are set;
`Context` is what all three decode through.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import Any

import llama_cpp
import numpy as np
from llama_cpp._internals import LlamaContext, LlamaModel

from owl.engine.kv_cache import DEFAULT, CacheTypes
from owl.engine.llama.batch import Batch
from owl.errors import EngineError, OwlError

MAX_UBATCH = 512  # llama.cpp's default micro-batch, which llama-perplexity and -imatrix keep


class Context:
    """A context and the model it belongs to; decodes run on one thread at a time."""

    def __init__(self, model: LlamaModel, params: Any, *, failure: OwlError) -> None:
        try:
            self._context = LlamaContext(model=model, params=params, verbose=False)
        except ValueError as err:
            raise failure from err
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(model.vocab))

    @property
    def ctx(self) -> Any:
        """The llama_context pointer (adapters are set on it)."""
        return self._context.ctx

    def decode(self, batch: Batch) -> int:
        """llama_decode's status: 0 done, 1 no room in the KV cache, else an error."""
        return int(llama_cpp.llama_decode(self._context.ctx, batch.raw))

    def clear(self) -> None:
        """Empty the KV cache: the next decode starts fresh sequences."""
        memory = llama_cpp.llama_get_memory(self._context.ctx)
        if memory:
            llama_cpp.llama_memory_clear(memory, True)

    def forget(self, seq: int, start: int) -> None:
        """Drop sequence `seq`'s cache from position `start` on."""
        llama_cpp.llama_memory_seq_rm(self._context.memory, seq, start, -1)

    def logits_at(self, index: int) -> np.ndarray:
        """The next-token logits after the `index`-th token of the last batch (a view)."""
        pointer = llama_cpp.llama_get_logits_ith(self._context.ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def logits(self, rows: int) -> np.ndarray:
        """The last decode's logits, (rows, n_vocab): llama.cpp's own buffer, a view."""
        pointer = llama_cpp.llama_get_logits(self._context.ctx)
        flat = np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(rows * self.n_vocab,)
        )
        return flat.reshape(rows, self.n_vocab)

    def sequence_bytes(self, seq: int) -> int:
        """What sequence `seq`'s cached tokens take: llama.cpp's saved-state size of it (its
        KV cells in the cache's own element types, and a small header)."""
        return int(llama_cpp.llama_state_seq_get_size(self.ctx, seq))

    def pooled(self, seq: int, width: int) -> np.ndarray | None:
        """Sequence `seq`'s pooled embedding from the last decode (a copy), or None."""
        pointer = llama_cpp.llama_get_embeddings_seq(self._context.ctx, seq)
        if not pointer:
            return None
        return np.ctypeslib.as_array(pointer, shape=(width,)).copy()

    def close(self) -> None:
        self._context.close()


def _threads(params: Any, threads: int | None) -> None:
    params.n_threads = params.n_threads_batch = threads or os.cpu_count() or 1
    params.no_perf = True


def generation_context(
    model: LlamaModel,
    *,
    n_ctx: int,
    slots: int,
    batch: int,
    threads: int | None,
    name: str,
    cache_types: CacheTypes = DEFAULT,
) -> Context:
    """`slots` KV-cache sequences of `n_ctx` cells each (of `cache_types`), decoded `batch`
    tokens at a time."""
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = n_ctx * slots
    params.n_batch = params.n_ubatch = batch
    params.n_seq_max = slots
    # One KV stream per slot, and flash attention (where the model allows it): with
    # these a generation's numbers do not depend on what else is in the batch (a
    # unified cache changes them). A cached prefix still moves them slightly; see
    # cache_prompt in owl/engine/scheduler.py.
    params.kv_unified = False
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
    _cache_types(params, cache_types)
    _threads(params, threads)
    failure = EngineError(
        f"llama.cpp could not make {slots} context(s) of {n_ctx} tokens for {name}; "
        "try a smaller --ctx or fewer --parallel slots" + _cache_hint(cache_types)
    )
    return Context(model, params, failure=failure)


_GGML_TYPES = {"f16": "GGML_TYPE_F16", "q8_0": "GGML_TYPE_Q8_0", "q4_0": "GGML_TYPE_Q4_0"}


def _cache_types(params: Any, cache_types: CacheTypes) -> None:
    params.type_k = getattr(llama_cpp, _GGML_TYPES[cache_types.k])
    params.type_v = getattr(llama_cpp, _GGML_TYPES[cache_types.v])


def _cache_hint(cache_types: CacheTypes) -> str:
    if cache_types.v == "f16":
        return ""
    # llama.cpp quantizes the V cache only under flash attention, which some models refuse.
    return f" (a {cache_types.v} V cache needs flash attention: try --cache-type-v f16)"


def embedding_context(
    model: LlamaModel,
    *,
    tokens: int,
    sequences: int,
    pooling: int,
    threads: int | None,
    name: str,
) -> Context:
    """Pooled outputs for up to `sequences` inputs of `tokens` in all, in one decode."""
    params = llama_cpp.llama_context_default_params()
    params.embeddings = True
    params.pooling_type = pooling
    # A pooled sequence must lie whole in one micro-batch, so both are the whole batch;
    # one unified KV stream lets sequences of any length share it.
    params.n_ctx = params.n_batch = params.n_ubatch = tokens
    params.n_seq_max = sequences
    params.kv_unified = True
    # Plain attention: with flash attention an input's vector changes (by ~1e-2) once
    # the batch around it passes a few dozen tokens; without, it is the same alone or
    # batched.
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
    _threads(params, threads)
    failure = EngineError(
        f"llama.cpp could not make an embedding context of {tokens} tokens for '{name}'; "
        "try a smaller --ctx"
    )
    return Context(model, params, failure=failure)


def eval_callback(on_eval: Callable[[int | None, bool, Any], bool]) -> Any:
    """A ggml_backend_sched_eval_callback calling `on_eval(tensor, ask, user_data)`; keep it
    alive as long as a context uses it."""
    return llama_cpp.ggml_backend_sched_eval_callback(on_eval)


def scoring_context(
    model: LlamaModel,
    *,
    n_ctx: int,
    threads: int | None,
    name: str,
    callback: Any = None,
    error: type[OwlError] = EngineError,
    hint: str = "try a smaller --ctx",
    cache_types: CacheTypes = DEFAULT,
) -> Context:
    """One sequence of `n_ctx` tokens, read in one decode, as `llama-perplexity -c CTX -b CTX`
    and `llama-imatrix` do: n_batch is n_ctx, n_ubatch llama.cpp's default (512, or n_ctx if
    smaller). `callback` (an eval_callback) sees every graph node computed.
    """
    params = llama_cpp.llama_context_default_params()
    params.n_ctx = params.n_batch = n_ctx
    params.n_ubatch = min(n_ctx, MAX_UBATCH)
    params.n_seq_max = 1
    _threads(params, threads)
    # llama-perplexity's setting, spelled out: "auto" turns flash attention on, and on a CPU
    # that alone moves a perplexity by up to 1% (it works in f16 there, with an f16 KV
    # cache); off, owl would not agree with llama-perplexity.
    params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
    _cache_types(params, cache_types)
    if callback is not None:
        params.cb_eval = callback
        params.cb_eval_user_data = None
    failure = error(f"llama.cpp could not make a context of {n_ctx} tokens for {name}; {hint}")
    return Context(model, params, failure=failure)
