"""A llama.cpp vocabulary: BOS, tokenizing as llama.cpp's tools do, token pieces, control
tokens."""

from __future__ import annotations

import ctypes
from typing import Any

import llama_cpp

from owl.errors import EngineError, OwlError


class Vocab:
    """The vocabulary of a loaded model (`model.vocab`)."""

    def __init__(self, vocab: Any) -> None:
        self._vocab = vocab
        self.n_tokens = int(llama_cpp.llama_vocab_n_tokens(vocab)) if vocab else 0

    @property
    def bos(self) -> int | None:
        """The BOS token, when the vocabulary asks for one at the start of a text."""
        if not llama_cpp.llama_vocab_get_add_bos(self._vocab):
            return None
        token = int(llama_cpp.llama_vocab_bos(self._vocab))
        return token if token >= 0 else None

    @property
    def start(self) -> int | None:
        """BOS whether or not the vocabulary adds it, else EOS: what a text without a
        context is predicted after."""
        for token in (
            llama_cpp.llama_vocab_bos(self._vocab),
            llama_cpp.llama_vocab_eos(self._vocab),
        ):
            if int(token) >= 0:
                return int(token)
        return None

    def plain_tokens(
        self,
        text: str,
        *,
        name: str,
        what: str = "the text",
        error: type[OwlError] = EngineError,
    ) -> list[int]:
        """`text`'s tokens as llama-perplexity and llama-imatrix make them: BOS if the
        vocabulary asks, special tokens read as text."""
        data = text.encode("utf-8")
        room = len(data) + 2
        buffer = (llama_cpp.llama_token * room)()
        count = llama_cpp.llama_tokenize(self._vocab, data, len(data), buffer, room, True, False)
        if count < 0:
            raise error(f"{name} could not tokenize {what} ({count})")
        return list(buffer[:count])

    def piece(self, token: int, *, special: bool) -> bytes:
        """The bytes of `token`; `special`: a control token's own text (else nothing)."""
        # llama-cpp-python's own helpers truncate or pad pieces to 32 bytes; ask llama.cpp
        # for the length it needs instead.
        buffer = ctypes.create_string_buffer(64)
        length = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, len(buffer), 0, special)
        if length < 0:
            buffer = ctypes.create_string_buffer(-length)
            length = llama_cpp.llama_token_to_piece(
                self._vocab, token, buffer, len(buffer), 0, special
            )
        return buffer.raw[: max(length, 0)]

    def texts(self) -> list[bytes]:
        """Every token's text as the vocabulary stores it (to compare two vocabularies)."""
        get_text = llama_cpp.llama_vocab_get_text
        return [get_text(self._vocab, token) or b"" for token in range(self.n_tokens)]

    def control_texts(self) -> frozenset[str]:
        """The texts of the control tokens (those `special` tokenizing turns into ids)."""
        # Only control tokens depend on `special`: llama.cpp matches user-defined ones always.
        texts = set()
        for token in range(self.n_tokens):
            if (
                llama_cpp.llama_vocab_get_attr(self._vocab, token)
                & llama_cpp.LLAMA_TOKEN_ATTR_CONTROL
            ):
                text = self.piece(token, special=True).decode("utf-8", "replace")
                if text:
                    texts.add(text)
        return frozenset(texts)

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends generation (EOS, EOT, <|im_end|>, …)."""
        return bool(llama_cpp.llama_vocab_is_eog(self._vocab, token))
