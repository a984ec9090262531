"""Embeddings: a GGUF loaded in llama.cpp to turn texts into pooled vectors.

Pooling is the model's own when its GGUF says (`<arch>.pooling_type`, written by llama.cpp's
converter from a sentence-transformers folder's 1_Pooling/config.json); a model that says
nothing, a causal LM such as SmolLM2, is mean-pooled over its last hidden states. Several
inputs go through one llama_decode as separate sequences and are pooled per sequence.

Decodes run on the engine thread (owl/engine/worker.py), never beside a generation's.
The llama.cpp modules are imported when an Embedder is made: importing owl.engine loads no
library.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from owl.engine.backend import Capability, Occupancy
from owl.engine.embeddings import Embeddings, checked_input
from owl.engine.llama.pooling import POOLING, pooling_type
from owl.engine.worker import engine_thread
from owl.errors import EngineError, NotEmbeddable

# Tokens one llama_decode evaluates at most (inputs of several sequences together), unless
# one input alone may be longer: the context then sets it.
BATCH_TOKENS = 512
MAX_SEQUENCES = 64


class Embedder:
    """A GGUF loaded in llama.cpp for embeddings only (its own context, pooled outputs).

    `n_ctx`: the longest input in tokens (0: the model's training context). `pooling`: one
    of POOLING to override the model's own (default: the model's, else "mean").
    """

    capabilities = frozenset({Capability.EMBED})

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int = 0,
        threads: int | None = None,
        pooling: str | None = None,
        name: str = "",
    ) -> None:
        from owl.engine.llama.batch import Batch
        from owl.engine.llama.context import embedding_context
        from owl.engine.llama.model import embedding_width, load_model
        from owl.engine.memory import with_overhead
        from owl.formats import inspect

        self.name = name or path.name
        self._model = load_model(path)
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
        self.dimensions = embedding_width(self._model)
        self._batch_tokens = max(self.n_ctx, BATCH_TOKENS)
        try:
            self._context = embedding_context(
                self._model,
                tokens=self._batch_tokens,
                sequences=MAX_SEQUENCES,
                pooling=POOLING[self.pooling],
                threads=threads,
                name=self.name,
            )
        except EngineError:
            self._model.close()
            raise
        self._batch: Batch | None = Batch(self._batch_tokens)
        self.memory_bytes = with_overhead(
            path.stat().st_size, inspect(path).metadata, ctx=self._batch_tokens
        )
        self._tail = _appended_token(self._model.vocab)
        self._lock = threading.Lock()
        self._calls = 0  # embed calls under way (their decodes take turns on the engine thread)

    def occupancy(self) -> Occupancy:
        with self._lock:
            calls = self._calls
        return Occupancy(1, min(calls, 1), max(calls - 1, 0))

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
        with self._lock:
            self._calls += 1
        try:
            for group in self._groups(checked):
                vectors.extend(engine_thread().submit(self._decode, group).result())
        finally:
            with self._lock:
                self._calls -= 1
        if normalize:
            vectors = [_normalized(vector) for vector in vectors]
        return Embeddings([vector.tolist() for vector in vectors], [len(t) for t in checked])

    def _checked(self, tokens: list[int], index: int, truncate: bool) -> list[int]:
        if truncate and len(tokens) > self.n_ctx > 1 and tokens[-1] == self._tail:
            # Cut the text, not the [SEP] the tokenizer closes it with, as
            # sentence-transformers cuts: the encoder was trained on inputs that end with it.
            tokens = [*tokens[: self.n_ctx - 1], tokens[-1]]
        return checked_input(
            tokens, index, vocab=self._context.n_vocab, n_ctx=self.n_ctx, truncate=truncate,
            name=self.name,
        )  # fmt: skip

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
        batch = self._batch
        if batch is None:
            raise EngineError(f"'{self.name}' was unloaded; load it again")
        self._context.clear()
        batch.clear()
        for seq, tokens in enumerate(group):
            batch.add(seq, tokens, logits_from=0)
        status = self._context.decode(batch)
        if status != 0:
            raise EngineError(f"llama.cpp could not evaluate the inputs (llama_decode {status})")
        vectors = []
        for seq in range(len(group)):
            vector = self._context.pooled(seq, self.dimensions)
            if vector is None:
                raise EngineError(f"llama.cpp gave no pooled embedding for '{self.name}'")
            vectors.append(vector)
        self._context.clear()
        return vectors

    def close(self, *, cancel: bool = False) -> None:
        """Free the context and the weights (waits for a decode of its own to end; an embed
        call is short, so `cancel` has nothing to cut short)."""
        engine_thread().submit(self._free).result()

    def _free(self) -> None:
        if self._batch is not None:
            self._batch.close()
            self._batch = None
            self._context.close()
            self._model.close()


def _appended_token(vocab: object) -> int | None:
    """The token the vocabulary closes every text with (BERT's [SEP]), if it adds one."""
    import llama_cpp

    if llama_cpp.llama_vocab_get_add_sep(vocab):
        token = int(llama_cpp.llama_vocab_sep(vocab))
    elif llama_cpp.llama_vocab_get_add_eos(vocab):
        token = int(llama_cpp.llama_vocab_eos(vocab))
    else:
        return None
    return token if token >= 0 else None


def _normalized(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    return vector / norm if norm > 0 else vector
