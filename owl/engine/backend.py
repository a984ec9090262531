"""The Backend protocol: what owl needs from an inference library.

A backend speaks token ids (nanochat's split): owl renders chat templates, detects stop
strings and streams text itself, so every backend behaves the same to the user.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from owl.engine.sampling import SamplingParams


class Backend(Protocol):
    """One loaded model in an inference library."""

    @property
    def n_ctx(self) -> int:
        """The context window the model was loaded with, in tokens."""
        ...

    @property
    def metadata(self) -> dict[str, str]:
        """The model file's metadata as strings (chat template, token texts, …)."""
        ...

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        """Text to token ids; `special` parses control tokens like <|im_start|>."""
        ...

    def token_bytes(self, token: int) -> bytes:
        """The bytes a generated token stands for (may be part of a UTF-8 character)."""
        ...

    def token_text(self, token: int) -> str:
        """A special token's own text, e.g. '<|im_end|>', for chat templates."""
        ...

    @property
    def control_texts(self) -> frozenset[str]:
        """The texts of the control tokens that `tokenize(special=True)` turns into ids."""
        ...

    @property
    def bos_token(self) -> int | None: ...

    @property
    def eos_token(self) -> int | None: ...

    @property
    def adds_bos(self) -> bool:
        """Whether the vocabulary wants a BOS token in front of every prompt."""
        ...

    def is_eog(self, token: int) -> bool:
        """Whether `token` ends generation (EOS, EOT, <|im_end|>, …)."""
        ...

    def generate(self, tokens: list[int], params: SamplingParams) -> Iterator[int]:
        """Evaluate `tokens`, then yield sampled token ids until the caller stops."""
        ...

    def close(self) -> None:
        """Free the model's memory."""
        ...
