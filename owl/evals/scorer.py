"""Logits of a chunk from llama.cpp, through llama-cpp-python's low-level API.

Low level rather than `llama_cpp.Llama(logits_all=True)`: llama-perplexity asks llama.cpp
for the logits of the second half of each chunk only, in one decode per chunk; doing the
same gives its numbers (the output rows are the only difference in the graph) and skips
half of the vocabulary projection, which is a fifth of a small model's work.

Not thread-safe, and llama.cpp's OpenMP threads slow down threefold when decodes come
from two threads of one process (see owl/engine/model.py): decode from one thread.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from owl.config import Settings
from owl.errors import EngineError, EvalError
from owl.store import Manifest, Store, resolve

log = logging.getLogger(__name__)

MAX_UBATCH = 512  # llama.cpp's default micro-batch, which llama-perplexity keeps


def vocab_bos(llama_cpp: Any, vocab: Any) -> int | None:
    """The BOS token, when the vocabulary asks for one at the start of a text."""
    if not llama_cpp.llama_vocab_get_add_bos(vocab):
        return None
    token = int(llama_cpp.llama_vocab_bos(vocab))
    return token if token >= 0 else None


def plain_tokens(
    llama_cpp: Any, vocab: Any, text: str, *, name: str, what: str = "the text"
) -> list[int]:
    """`text`'s tokens as llama-perplexity and llama-imatrix make them: BOS if the
    vocabulary asks, special tokens read as text."""
    data = text.encode("utf-8")
    room = len(data) + 2
    buffer = (llama_cpp.llama_token * room)()
    count = llama_cpp.llama_tokenize(vocab, data, len(data), buffer, room, True, False)
    if count < 0:
        raise EngineError(f"{name} could not tokenize {what} ({count})")
    return list(buffer[:count])


class LlamaScorer:
    """A GGUF model in llama.cpp with a context of `n_ctx` tokens and one sequence.

    `n_batch` is n_ctx, so that a chunk is one decode; `n_ubatch` is llama.cpp's default
    (512, or n_ctx if smaller), as in `llama-perplexity -c CTX -b CTX`.
    """

    def __init__(self, path: Path, *, n_ctx: int, threads: int, name: str | None = None) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        self.name = name or path.name
        # What Llama(verbose=False) does: llama.cpp's log lines only for errors.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        llama_cpp.llama_backend_init()
        self._model = llama_cpp.llama_model_load_from_file(
            str(path).encode(), llama_cpp.llama_model_default_params()
        )
        if not self._model:
            raise EngineError(
                f"llama.cpp could not load {self.name}: the file may be damaged, have no "
                "vocabulary, or be of an architecture this llama.cpp does not support; "
                "check it with `owl show`"
            )
        self._ctx = None
        self._batch = None
        try:
            self._vocab = llama_cpp.llama_model_get_vocab(self._model)
            self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
            if not self._vocab or self.n_vocab <= 0:
                raise EngineError(f"{self.name} has no vocabulary, so it cannot score text")
            self.n_ctx_train = int(llama_cpp.llama_model_n_ctx_train(self._model))
            params = llama_cpp.llama_context_default_params()
            params.n_ctx = n_ctx
            params.n_batch = n_ctx
            params.n_ubatch = min(n_ctx, MAX_UBATCH)
            params.n_seq_max = 1
            params.n_threads = threads
            params.n_threads_batch = threads
            params.no_perf = True
            # llama-perplexity's setting, spelled out: "auto" turns flash attention on, and on
            # a CPU that alone moves a perplexity by up to 1% (it works in f16 there, with an
            # f16 KV cache); off, owl would not agree with llama-perplexity.
            params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
            self._ctx = llama_cpp.llama_init_from_model(self._model, params)
            if not self._ctx:
                raise EngineError(
                    f"llama.cpp could not make a context of {n_ctx} tokens for {self.name}; "
                    "try a smaller --ctx"
                )
            self.n_ctx = n_ctx
            self._batch = llama_cpp.llama_batch_init(n_ctx, 0, 1)
        except BaseException:
            self.close()
            raise

    # The vocabulary

    @property
    def bos(self) -> int | None:
        """The BOS token, when the vocabulary asks for one at the start of a text."""
        return vocab_bos(self._llama_cpp, self._vocab)

    def tokenize(self, text: str) -> list[int]:
        """`text`'s tokens as llama-perplexity makes them: BOS if asked, no special tokens."""
        return plain_tokens(self._llama_cpp, self._vocab, text, name=self.name)

    def token_texts(self) -> list[bytes]:
        """Every token's text as the vocabulary stores it (to compare two vocabularies)."""
        get_text = self._llama_cpp.llama_vocab_get_text
        return [get_text(self._vocab, token) or b"" for token in range(self.n_vocab)]

    # Scoring

    def logits(self, tokens: Sequence[int], *, first: int, copy: bool = True) -> np.ndarray:
        """float32 logits (len(tokens) - first, n_vocab) of positions first … end, one decode.

        The KV cache is cleared first: each call is a fresh sequence from position 0. With
        `copy=False` the array is llama.cpp's own buffer, valid until the next call.
        """
        llama_cpp = self._llama_cpp
        count = len(tokens)
        if not 0 <= first < count <= self.n_ctx:
            raise EvalError(
                f"cannot score {count} tokens from {first} in a context of {self.n_ctx}"
            )
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self._ctx), True)
        batch = self._batch
        batch.n_tokens = count
        for index, token in enumerate(tokens):
            batch.token[index] = token
            batch.pos[index] = index
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = 0
            batch.logits[index] = index >= first
        code = llama_cpp.llama_decode(self._ctx, batch)
        if code != 0:
            raise EngineError(f"llama.cpp failed to decode a chunk of {self.name} (code {code})")
        rows = count - first
        pointer = llama_cpp.llama_get_logits(self._ctx)
        flat = np.ctypeslib.as_array(
            ctypes.cast(pointer, ctypes.POINTER(ctypes.c_float)), shape=(rows * self.n_vocab,)
        )
        array = flat.reshape(rows, self.n_vocab)
        return array.copy() if copy else array

    def close(self) -> None:
        """Free the batch, the context and the model (safe to call twice)."""
        llama_cpp = self._llama_cpp
        if self._batch is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if self._ctx:
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if self._model:
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> LlamaScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_scorer(
    model: str | Manifest,
    *,
    n_ctx: int,
    store: Store,
    settings: Settings,
    allow_unsafe: bool = False,
    by: str = "owl eval",
) -> LlamaScorer:
    """A stored model (a name, file or reference, pulled if absent) ready to score text.

    It must pass the scan gate like any model owl loads (UnsafeModel otherwise, unless
    `allow_unsafe`), and be a GGUF.
    """
    from owl.scan.policy import require_loadable

    manifest = (
        model
        if isinstance(model, Manifest)
        else resolve(model, store=store, settings=settings, pull_missing=True)
    )
    manifest = require_loadable(manifest, store=store, allow_unsafe=allow_unsafe, by=by)
    if manifest.format != "gguf":
        raise EvalError(
            f"model '{manifest.display_name}' is {manifest.format}; owl evaluates GGUF models: "
            f"convert it first (`owl convert {manifest.display_name}`)"
        )
    path = store.weights_path(manifest)
    scorer = LlamaScorer(path, n_ctx=n_ctx, threads=settings.threads, name=manifest.display_name)
    if n_ctx > scorer.n_ctx_train > 0:
        log.warning(
            "%s was trained on a context of %d tokens; --ctx %d goes beyond it",
            scorer.name,
            scorer.n_ctx_train,
            n_ctx,
        )
    return scorer
