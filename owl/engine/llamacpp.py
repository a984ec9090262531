"""The llama.cpp backend, through llama-cpp-python."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path

from owl.engine.sampling import SamplingParams
from owl.errors import EngineError


class LlamaCppBackend:
    """A GGUF model loaded in llama.cpp. Not thread-safe: the Model above it serializes."""

    def __init__(self, path: Path, *, n_ctx: int, threads: int | None = None) -> None:
        import llama_cpp

        self._llama_cpp = llama_cpp
        threads = threads or os.cpu_count() or 1
        try:
            self._llama = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as err:
            raise EngineError(
                f"llama.cpp could not load {path.name} ({err}); the file may be damaged or of "
                "an architecture this llama.cpp does not support: check it with `owl show`"
            ) from err
        self._model = self._llama._model
        self._vocab = self._model.vocab

    @property
    def n_ctx(self) -> int:
        return self._llama.n_ctx()

    @property
    def metadata(self) -> dict[str, str]:
        return self._llama.metadata

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self._llama.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def _piece(self, token: int, special: bool) -> bytes:
        # llama-cpp-python's own helpers truncate or pad pieces to 32 bytes; ask llama.cpp
        # for the length it needs instead.
        buffer = ctypes.create_string_buffer(64)
        length = self._llama_cpp.llama_token_to_piece(
            self._vocab, token, buffer, len(buffer), 0, special
        )
        if length < 0:
            buffer = ctypes.create_string_buffer(-length)
            length = self._llama_cpp.llama_token_to_piece(
                self._vocab, token, buffer, len(buffer), 0, special
            )
        return buffer.raw[: max(length, 0)]

    def token_bytes(self, token: int) -> bytes:
        return self._piece(token, special=False)

    def token_text(self, token: int) -> str:
        return self._piece(token, special=True).decode("utf-8", "replace")

    @cached_property
    def control_texts(self) -> frozenset[str]:
        # Only control tokens depend on `special`: llama.cpp matches user-defined ones always.
        llama_cpp = self._llama_cpp
        texts = set()
        for token in range(llama_cpp.llama_vocab_n_tokens(self._vocab)):
            if (
                llama_cpp.llama_vocab_get_attr(self._vocab, token)
                & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
            ):
                text = self.token_text(token)
                if text:
                    texts.add(text)
        return frozenset(texts)

    @property
    def bos_token(self) -> int | None:
        token = self._llama.token_bos()
        return token if token >= 0 else None

    @property
    def eos_token(self) -> int | None:
        token = self._llama.token_eos()
        return token if token >= 0 else None

    @property
    def adds_bos(self) -> bool:
        return bool(self._model.add_bos_token())

    def is_eog(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def generate(self, tokens: list[int], params: SamplingParams) -> Iterator[int]:
        seed = self._llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed
        self._llama.set_seed(seed)
        # Evaluate every prompt whole. Reusing the KV cache of a shared prefix would save
        # time, but re-evaluating part of a prompt in a smaller batch changes the logits
        # slightly, and then the same greedy request can give a different answer.
        self._llama.reset()
        return self._llama.generate(
            tokens,
            temp=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
        )

    def close(self) -> None:
        self._llama.close()
