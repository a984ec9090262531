"""Embeddings: a stored GGUF loaded in llama.cpp to turn texts into pooled vectors.

Pooling is the model's own when its GGUF says (`<arch>.pooling_type`, written by llama.cpp's
converter from a sentence-transformers folder's 1_Pooling/config.json); a model that says
nothing, a causal LM such as SmolLM2, is mean-pooled over its last hidden states. Several
inputs go through one llama_decode as separate sequences and are pooled per sequence.

Decodes run on the engine thread (owl/engine/worker.py), never beside a generation's.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from owl.config import Settings
from owl.engine.worker import engine_thread
from owl.errors import ContextOverflow, EngineError, InvalidPrompt, NotEmbeddable
from owl.store import Manifest, Store

POOLING = {"none": 0, "mean": 1, "cls": 2, "last": 3, "rank": 4}
# Architectures that are encoders (bidirectional attention): embedding models even when a
# converter wrote no pooling type.
ENCODER_ARCHITECTURES = frozenset(
    {"bert", "nomic-bert", "nomic-bert-moe", "neo-bert", "jina-bert-v2", "modern-bert", "eurobert"}
)
# Tokens one llama_decode evaluates at most (inputs of several sequences together), unless
# one input alone may be longer: the context then sets it.
BATCH_TOKENS = 512
MAX_SEQUENCES = 64


def pooling_type(metadata: dict[str, Any]) -> str | None:
    """The pooling a GGUF's metadata names ("mean", "cls", "last", …), or None if none."""
    arch = metadata.get("general.architecture", "")
    value = metadata.get(f"{arch}.pooling_type")
    names = {number: name for name, number in POOLING.items()}
    return names.get(value) if isinstance(value, int) else None


def is_embedding_model(metadata: dict[str, Any]) -> bool:
    """Whether a GGUF is made for embeddings (an encoder, or one with a pooling type).

    Any causal GGUF can embed too (mean pooling), but is not an embedding model.
    """
    pooling = pooling_type(metadata)
    arch = metadata.get("general.architecture", "")
    return (pooling is not None and pooling not in ("none", "rank")) or (
        arch in ENCODER_ARCHITECTURES
    )


@dataclass(frozen=True)
class Embeddings:
    """One vector per input, in input order, and the tokens each input counted."""

    vectors: list[list[float]]
    token_counts: list[int]

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)


class Embedder:
    """A GGUF loaded in llama.cpp for embeddings only (its own context, pooled outputs).

    `n_ctx`: the longest input in tokens (0: the model's training context). `pooling`: one
    of POOLING to override the model's own (default: the model's, else "mean").
    """

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 0,
        threads: int | None = None,
        pooling: str | None = None,
        name: str = "",
    ) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaContext, LlamaModel

        from owl.engine.llamacpp import quiet_llama_cpp

        quiet_llama_cpp()

        self._llama_cpp = llama_cpp
        self.name = name or path.name
        # What Llama(verbose=False) does: llama.cpp's log lines only for errors.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        threads = threads or os.cpu_count() or 1
        try:
            self._model = LlamaModel(
                path_model=str(path), params=llama_cpp.llama_model_default_params(), verbose=False
            )
        except (ValueError, RuntimeError, OSError) as err:
            raise EngineError(
                f"llama.cpp could not load {path.name} ({err}); the file may be damaged or of "
                "an architecture this llama.cpp does not support: check it with `owl show`"
            ) from err
        metadata = self._model.metadata()
        self.pooling = pooling or pooling_type(metadata) or "mean"
        if self.pooling not in POOLING or self.pooling in ("none", "rank"):
            self._model.close()
            raise NotEmbeddable(
                f"'{self.name}' cannot make embeddings with pooling '{self.pooling}'; "
                "use mean, cls or last"
            )
        trained = self._model.n_ctx_train()
        self.n_ctx = min(n_ctx, trained) if n_ctx and trained > 0 else (n_ctx or trained)
        self.dimensions = llama_cpp.llama_model_n_embd_out(self._model.model) or (
            self._model.n_embd()
        )
        self._batch_tokens = max(self.n_ctx, BATCH_TOKENS)
        params = llama_cpp.llama_context_default_params()
        params.embeddings = True
        params.pooling_type = POOLING[self.pooling]
        # A pooled sequence must lie whole in one micro-batch, so both are the whole batch;
        # one unified KV stream lets sequences of any length share it.
        params.n_ctx = self._batch_tokens
        params.n_batch = self._batch_tokens
        params.n_ubatch = self._batch_tokens
        params.n_seq_max = MAX_SEQUENCES
        params.kv_unified = True
        # Plain attention: with flash attention an input's vector changes (by ~1e-2) once
        # the batch around it passes a few dozen tokens; without, it is the same alone or
        # batched.
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        try:
            self._context = LlamaContext(model=self._model, params=params, verbose=False)
        except ValueError as err:
            self._model.close()
            raise EngineError(
                f"llama.cpp could not make an embedding context of {self._batch_tokens} tokens "
                f"for '{self.name}'; try a smaller --ctx"
            ) from err
        self._batch = llama_cpp.llama_batch_init(self._batch_tokens, 0, 1)

    def tokenize(self, text: str) -> list[int]:
        """The input's tokens with the special ones the model adds (BERT's [CLS] … [SEP])."""
        if not text:
            return []
        return self._model.tokenize(text.encode("utf-8"), add_bos=True, special=False)

    def embed(
        self, texts: Sequence[str], *, normalize: bool = True, truncate: bool = False
    ) -> Embeddings:
        """One vector per text, L2-normalized unless told not to.

        An input longer than the context raises ContextOverflow, or with `truncate` keeps
        its first n_ctx tokens. An input with no tokens raises InvalidPrompt.
        """
        return self.embed_tokens(
            [self.tokenize(text) for text in texts], normalize=normalize, truncate=truncate
        )

    def embed_tokens(
        self, inputs: Sequence[Sequence[int]], *, normalize: bool = True, truncate: bool = False
    ) -> Embeddings:
        """embed() for inputs already tokenized (OpenAI accepts token ids)."""
        checked = [
            self._checked(list(tokens), index, truncate) for index, tokens in enumerate(inputs)
        ]
        vectors: list[np.ndarray] = []
        for group in self._groups(checked):
            vectors.extend(engine_thread().submit(self._decode, group).result())
        if normalize:
            vectors = [_normalized(vector) for vector in vectors]
        return Embeddings([vector.tolist() for vector in vectors], [len(t) for t in checked])

    def _checked(self, tokens: list[int], index: int, truncate: bool) -> list[int]:
        if not tokens:
            raise InvalidPrompt(f"input {index} is empty; every input needs some text")
        vocab = self._llama_cpp.llama_vocab_n_tokens(self._model.vocab)
        if any(not 0 <= token < vocab for token in tokens):
            raise InvalidPrompt(
                f"input {index} has a token id outside the model's vocabulary (0–{vocab - 1})"
            )
        if len(tokens) > self.n_ctx:
            if not truncate:
                raise ContextOverflow(
                    f"input {index} is {len(tokens)} tokens, more than the {self.n_ctx} "
                    f"'{self.name}' embeds at once; shorten or split it"
                )
            tokens = tokens[: self.n_ctx]
        return tokens

    def _groups(self, inputs: list[list[int]]) -> list[list[list[int]]]:
        # Consecutive inputs, as many as fit one batch: the output keeps the input order.
        groups: list[list[list[int]]] = [[]]
        used = 0
        for tokens in inputs:
            full = used + len(tokens) > self._batch_tokens or len(groups[-1]) >= MAX_SEQUENCES
            if groups[-1] and full:
                groups.append([])
                used = 0
            groups[-1].append(tokens)
            used += len(tokens)
        return [group for group in groups if group]

    def _decode(self, group: list[list[int]]) -> list[np.ndarray]:
        # On the engine thread only.
        llama_cpp = self._llama_cpp
        ctx = self._context.ctx
        memory = llama_cpp.llama_get_memory(ctx)
        if memory:
            llama_cpp.llama_memory_clear(memory, True)
        batch = self._batch
        n = 0
        for seq, tokens in enumerate(group):
            for position, token in enumerate(tokens):
                batch.token[n] = token
                batch.pos[n] = position
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = seq
                batch.logits[n] = True
                n += 1
        batch.n_tokens = n
        status = llama_cpp.llama_decode(ctx, batch)
        if status != 0:
            raise EngineError(f"llama.cpp could not evaluate the inputs (llama_decode {status})")
        vectors = []
        for seq in range(len(group)):
            pointer = llama_cpp.llama_get_embeddings_seq(ctx, seq)
            if not pointer:
                raise EngineError(f"llama.cpp gave no pooled embedding for '{self.name}'")
            vectors.append(np.ctypeslib.as_array(pointer, shape=(self.dimensions,)).copy())
        if memory:
            llama_cpp.llama_memory_clear(memory, True)
        return vectors

    def close(self) -> None:
        """Free the context and the weights (waits for a decode of its own to end)."""
        engine_thread().submit(self._free).result()

    def _free(self) -> None:
        if self._batch is not None:
            self._llama_cpp.llama_batch_free(self._batch)
            self._batch = None
            self._context.close()
            self._model.close()


def _normalized(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    return vector / norm if norm > 0 else vector


def load_embedder(
    manifest: Manifest,
    *,
    store: Store,
    settings: Settings,
    allow_unsafe: bool = False,
    by: str = "owl",
) -> Embedder:
    """An Embedder for a stored GGUF, if its scan verdict is clean (as owl.engine.load).

    NotEmbeddable for a model that is not a GGUF (`owl convert` it first).
    """
    from owl.engine import context_size
    from owl.scan.policy import require_loadable

    manifest = require_loadable(manifest, store=store, allow_unsafe=allow_unsafe, by=by)
    if manifest.format != "gguf":
        raise NotEmbeddable(
            f"'{manifest.display_name}' is {manifest.format}; owl makes embeddings with "
            f"llama.cpp from GGUF models: convert it first (`owl convert {manifest.display_name}`)"
        )
    return Embedder(
        store.weights_path(manifest),
        n_ctx=context_size(manifest, settings),
        threads=settings.threads,
        name=manifest.display_name,
    )
