"""The engine contract: what a backend declares, and what owl needs from it.

A backend declares its `capabilities` and implements exactly the methods those need:
generating backends (chat, complete, score) speak token ids (nanochat's split: owl renders
chat templates, detects stop strings and streams text itself, so every backend behaves the
same to the user) and run their generations through a `Scheduler`; an embedder (embed)
turns texts into vectors. Every loaded thing reports its memory and its occupancy, so that
the server's pool and /metrics need nothing private.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from owl.engine.sampling import SamplingParams

if TYPE_CHECKING:
    from owl.engine.drawing import Drawing, DrawLimits, DrawOptions
    from owl.engine.speech import Speech, Transcript


class Capability(StrEnum):
    """What a loaded model can do; `engine.load` is asked for one."""

    CHAT = "chat"
    COMPLETE = "complete"
    SCORE = "score"  # the log-probabilities of a prompt's tokens (and of generated ones)
    EMBED = "embed"
    # Declared for the modalities to come; no backend has them yet.
    TRANSCRIBE = "transcribe"
    SPEAK = "speak"
    SEE = "see"
    DRAW = "draw"
    RERANK = "rerank"  # a relevance score for each (query, document) pair: a cross-encoder


@dataclass(frozen=True)
class Occupancy:
    """How busy a loaded model is: its slots, and the work running in them and waiting."""

    slots: int
    running: int
    waiting: int

    @property
    def busy(self) -> int:
        """Work running or waiting."""
        return self.running + self.waiting


@dataclass(frozen=True)
class TokenLogprob:
    """A token's log-probability under the model, with the most likely alternatives."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


class Sink(Protocol):
    """Where a generation's tokens go (owl/engine/model.py turns them into text)."""

    @property
    def cancelled(self) -> bool:
        """The reader went away: free the slot."""
        ...

    def token(self, token: int, logprob: TokenLogprob | None) -> bool:
        """A sampled token; False ends the generation (end of text, stop string, limit)."""
        ...

    def prompt_logprobs(self, logprobs: list[TokenLogprob | None]) -> None:
        """The log-probability of each prompt token given those before it (None for the first)."""
        ...

    def end(self, error: BaseException | None = None) -> None: ...


class Scheduler(Protocol):
    """Runs a backend's generations: several at once (batching), or one after another."""

    def submit(
        self,
        prompt: list[int],
        params: SamplingParams,
        sink: Sink,
        *,
        prompt_logprobs: int | None = None,
        sample: bool = True,
        cache_prompt: bool = True,
        group: object | None = None,
        media: Any = None,
    ) -> None:
        """Queue a generation whose tokens go to `sink` (`media`: the images that fill the
        prompt's MEDIA positions, owl/engine/scheduler.py). A scheduler that cannot do what is
        asked (constrained output, logprobs, scoring) raises NotSupportedYet here, at once."""
        ...

    def occupancy(self) -> Occupancy: ...

    def wait_idle(self) -> None:
        """Return once no generation is running or waiting."""
        ...

    def abort(self) -> None:
        """Refuse new work and end every generation soon (each still gets its final Delta)."""
        ...

    def close(self) -> None:
        """Refuse new work."""
        ...


class Backend(Protocol):
    """One model loaded in an inference library, for generation (chat, complete, score)."""

    @property
    def capabilities(self) -> frozenset[Capability]: ...

    @property
    def scheduler(self) -> Scheduler:
        """What runs this backend's generations (Model.generate submits to it)."""
        ...

    @property
    def memory_bytes(self) -> int:
        """The memory the loaded model takes, estimated: weights, KV cache, working margin."""
        ...

    @property
    def n_ctx(self) -> int:
        """The context window of one generation, in tokens."""
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

    @property
    def vocab_size(self) -> int:
        """Token ids run from 0 to vocab_size - 1 (check ids a client sends against it)."""
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

    def close(self) -> None:
        """Free the model's memory (after its scheduler has stopped), on the engine thread."""
        ...


class Loaded(Protocol):
    """What `engine.load` returns, whatever the capability: a Model or an Embedder."""

    @property
    def name(self) -> str: ...

    @property
    def capabilities(self) -> frozenset[Capability]: ...

    @property
    def memory_bytes(self) -> int: ...

    @property
    def n_ctx(self) -> int:
        """The context window it was loaded with, in tokens."""
        ...

    def occupancy(self) -> Occupancy: ...

    def close(self, *, cancel: bool = False) -> None: ...


class Transcriber(Loaded, Protocol):
    """What `engine.load(capability=TRANSCRIBE)` returns: speech to text (owl/engine/whisper)."""

    def transcribe(
        self,
        audio: Any,  # np.ndarray of 16 kHz samples, the bytes of an audio file, or its Path
        *,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        task: str = "transcribe",
        word_timestamps: bool = False,
        max_seconds: float = 3600,
        max_bytes: int = 100 << 20,
        progress: Callable[[float, float], None] | None = None,
    ) -> Transcript: ...


class Voice(Loaded, Protocol):
    """What `engine.load(capability=SPEAK)` returns: text to speech (owl/engine/piper)."""

    def speak(self, text: str, *, speed: float = 1.0) -> Speech: ...


class Drawer(Loaded, Protocol):
    """What `engine.load(capability=DRAW)` returns: text to images (owl/engine/diffusers)."""

    @property
    def default_size(self) -> tuple[int, int]:
        """(width, height) the model draws when no size is asked for."""
        ...

    def draw(
        self,
        options: DrawOptions,
        *,
        limits: DrawLimits | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Drawing:
        """The images `options` ask for, once checked against `limits` (default: DrawLimits()).
        `progress(step, steps)` after each denoising step; `cancelled()` true stops the
        drawing at the next step with EngineError."""
        ...


class Reranker(Loaded, Protocol):
    """What `engine.load(capability=RERANK)` returns: documents scored against a query
    (owl/engine/transformers/cross_encoder.py)."""

    def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        """One relevance score per document, in input order; higher is more relevant."""
        ...

    def tokenize(self, text: str) -> list[int]:
        """The text's own tokens (without the special ones a pair is framed with): what a
        response's usage counts."""
        ...
