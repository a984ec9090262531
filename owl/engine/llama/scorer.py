"""A GGUF read in chunks for its logits: perplexity and KL divergence (owl/evals), and the
importance matrix (owl/quantize/calibrate.py), which watches the same decodes.

Chunks are read as llama-perplexity and llama-imatrix read them: one sequence of up to
`n_ctx` tokens per decode, the KV cache cleared first. llama-perplexity asks llama.cpp for the
logits of the second half of each chunk only; doing the same gives its numbers (the output
rows are the only difference in the graph) and skips half of the vocabulary projection,
which is a fifth of a small model's work.

`extend` continues the cached sequence instead (owl eval scores a question's shared context
once, then each choice from the end of it).

Not thread-safe, and llama.cpp's OpenMP threads slow down threefold when decodes come from
two threads of one process (see owl/engine/worker.py): decode from one thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from owl.engine.kv_cache import DEFAULT, CacheTypes
from owl.engine.llama.batch import Batch
from owl.engine.llama.context import Context, scoring_context
from owl.engine.llama.lora import apply_adapters, free_adapters
from owl.engine.llama.model import load_model
from owl.engine.llama.vocab import Vocab
from owl.errors import EngineError, EvalError, OwlError


class Scorer:
    """A GGUF model in llama.cpp with a context of `n_ctx` tokens and one sequence.

    `callback` (owl.engine.llama.context.eval_callback) sees every graph node of every
    decode; `error` is what a failure to load or to make the context raises, and `hint`
    what that message suggests. `adapters`: LoRA (file, scale) pairs set on the context.
    """

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        threads: int,
        name: str | None = None,
        callback: Any = None,
        error: type[OwlError] = EngineError,
        hint: str = "try a smaller --ctx",
        adapters: Sequence[tuple[Path, float]] = (),
        cache_types: CacheTypes = DEFAULT,
    ) -> None:
        self.name = name or path.name
        self._model = load_model(path, name=self.name, error=error)
        self._context: Context | None = None
        self._batch: Batch | None = None
        self._adapters: list[Any] = []
        try:
            self.vocab = Vocab(self._model.vocab)
            self.n_vocab = self.vocab.n_tokens
            if self.n_vocab <= 0:
                raise error(f"{self.name} has no vocabulary, so it cannot score text")
            self.n_ctx_train = int(self._model.n_ctx_train())
            self._context = scoring_context(
                self._model,
                n_ctx=n_ctx,
                threads=threads,
                name=self.name,
                callback=callback,
                error=error,
                hint=hint,
                cache_types=cache_types,
            )
            apply_adapters(self._model, self._context, adapters, self._adapters)
            self.n_ctx = n_ctx
            self._batch = Batch(n_ctx)
        except BaseException:
            self.close()
            raise

    @property
    def bos(self) -> int | None:
        """The BOS token, when the vocabulary asks for one at the start of a text."""
        return self.vocab.bos

    @property
    def prefix(self) -> int | None:
        """The token a text is scored after when nothing comes before it (lm-eval's
        prefix_token_id): BOS even where the vocabulary does not add one, else EOS."""
        return self.vocab.start

    def tokenize(self, text: str) -> list[int]:
        """`text`'s tokens as llama-perplexity makes them: BOS if asked, no special tokens."""
        return self.vocab.plain_tokens(text, name=self.name)

    def token_texts(self) -> list[bytes]:
        """Every token's text as the vocabulary stores it (to compare two vocabularies)."""
        return self.vocab.texts()

    def evaluate(self, tokens: Sequence[int], *, first: int) -> int:
        """Decode `tokens` as a fresh sequence from position 0, with logits for positions
        first … end; llama_decode's status (0: done)."""
        assert self._context is not None and self._batch is not None
        self._context.clear()
        self._batch.clear()
        self._batch.add(0, tokens, logits_from=first)
        return self._context.decode(self._batch)

    def logits(self, tokens: Sequence[int], *, first: int, copy: bool = True) -> np.ndarray:
        """float32 logits (len(tokens) - first, n_vocab) of positions first … end, one decode.

        The KV cache is cleared first: each call is a fresh sequence from position 0. With
        `copy=False` the array is llama.cpp's own buffer, valid until the next call.
        EvalError when the tokens do not fit the context from `first`.
        """
        count = len(tokens)
        if not 0 <= first < count <= self.n_ctx:
            raise EvalError(
                f"cannot score {count} tokens from {first} in a context of {self.n_ctx}"
            )
        code = self.evaluate(tokens, first=first)
        if code != 0:
            raise EngineError(f"llama.cpp failed to decode a chunk of {self.name} (code {code})")
        assert self._context is not None
        array = self._context.logits(count - first)
        return array.copy() if copy else array

    def extend(self, tokens: Sequence[int], *, start: int, copy: bool = True) -> np.ndarray:
        """float32 logits (len(tokens), n_vocab) of `tokens` decoded at positions start, …
        after the first `start` positions cached by `logits`/`extend`; what was cached from
        `start` on is dropped first. EvalError when they do not fit the context."""
        count = len(tokens)
        if not (0 < start and 0 < count and start + count <= self.n_ctx):
            raise EvalError(
                f"cannot score {count} tokens after {start} in a context of {self.n_ctx}"
            )
        assert self._context is not None and self._batch is not None
        self._context.forget(0, start)
        self._batch.clear()
        self._batch.add(0, tokens, start=start, logits_from=0)
        code = self._context.decode(self._batch)
        if code != 0:
            raise EngineError(f"llama.cpp failed to decode a chunk of {self.name} (code {code})")
        array = self._context.logits(count)
        return array.copy() if copy else array

    def close(self) -> None:
        """Free the batch, the context, the adapters and the model (safe to call twice)."""
        if self._batch is not None:
            self._batch.close()
            self._batch = None
        if self._context is not None:
            self._context.close()
            self._context = None
        free_adapters(self._adapters)  # after the context that used them
        if self._model is not None:
            self._model.close()
            self._model = None

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
