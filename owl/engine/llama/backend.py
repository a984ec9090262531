"""The llama.cpp backend: a GGUF model for chat, completion and scoring.

One llama.cpp context holds `slots` KV-cache sequences of `n_ctx` cells each — every
request gets the whole context window, as with `owl run` — and the continuous-batching
scheduler (owl/engine/scheduler.py) runs the generations over them; this class is its
Decoder. LoRA adapters apply to the whole context (every slot), so a base with adapters is a
backend of its own; the base's weights are mmapped, shared by the OS page cache with any
other backend of the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from owl.engine.backend import Capability, TokenLogprob
from owl.engine.kv_cache import DEFAULT, CacheTypes
from owl.engine.llama.batch import Batch
from owl.engine.llama.context import generation_context
from owl.engine.llama.lora import apply_adapters, free_adapters
from owl.engine.llama.model import load_model
from owl.engine.llama.sampler import free_sampler, make_sampler, sample
from owl.engine.llama.vocab import Vocab
from owl.engine.memory import with_overhead
from owl.engine.sampling import SamplingParams
from owl.engine.scheduler import MEDIA, BatchingScheduler, Piece
from owl.engine.worker import engine_thread
from owl.errors import ContextOverflow, EngineError, NotSupportedYet, WrongModelKind

BATCH_SIZE = 512


class LlamaCppBackend:
    """A GGUF model loaded in llama.cpp; its scheduler owns the context."""

    TEXT = frozenset({Capability.CHAT, Capability.COMPLETE, Capability.SCORE})

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        threads: int | None = None,
        slots: int = 1,
        adapters: Sequence[tuple[Path, float]] = (),
        projector: Path | None = None,
        cache_types: CacheTypes = DEFAULT,
    ) -> None:
        self._model = load_model(path)
        self._cache_types = cache_types
        self._name = path.name
        self._projector: Any = None  # set once the context is made (_close_model frees it)
        self._vocab = Vocab(self._model.vocab)
        self._slot_ctx = n_ctx or self._model.n_ctx_train()
        try:
            self._context = generation_context(
                self._model,
                n_ctx=self._slot_ctx,
                slots=slots,
                batch=BATCH_SIZE,
                threads=threads,
                name=path.name,
                cache_types=cache_types,
            )
        except EngineError:
            self._model.close()
            raise
        self._adapters: list[Any] = []
        try:
            apply_adapters(self._model, self._context, adapters, self._adapters)
        except EngineError:
            self._close_model()
            raise
        self._batch = Batch(BATCH_SIZE)
        self._slots = slots
        if projector is not None:
            from owl.engine.llama.vision import Projector

            try:
                self._projector = Projector(self._model, projector, threads=threads, name=path.name)
            except EngineError:
                self._batch.close()
                self._close_model()
                raise
        self.capabilities = self.TEXT | ({Capability.SEE} if self._projector else frozenset())
        self._memory = self._estimate(path, adapters)
        if projector is not None:
            self._memory += projector.stat().st_size
        self._scheduler = BatchingScheduler(self, worker=engine_thread())

    def _estimate(self, path: Path, adapters: Sequence[tuple[Path, float]]) -> int:
        from owl.formats import inspect

        weights = path.stat().st_size + sum(adapter.stat().st_size for adapter, _ in adapters)
        metadata = inspect(path).metadata
        return with_overhead(
            weights, metadata, ctx=self._slot_ctx * self._slots, cache_types=self._cache_types
        )

    def _close_model(self) -> None:
        """Free the context, the adapters and the model (after the scheduler has stopped)."""
        if self._projector is not None:
            self._projector.close()
        self._context.close()
        free_adapters(self._adapters)  # after the context that used them
        self._model.close()

    # The Backend contract (owl/engine/backend.py):
    @property
    def scheduler(self) -> BatchingScheduler:
        return self._scheduler

    @property
    def memory_bytes(self) -> int:
        return self._memory

    def cached_bytes(self, slot: int = 0) -> int:
        """The bytes slot `slot`'s cached tokens take in the KV cache (its types': f16, q8_0
        or q4_0); on the engine thread, between decodes."""
        return engine_thread().submit(self._context.sequence_bytes, slot).result()

    @property
    def n_ctx(self) -> int:
        """The context window of one generation (one slot)."""
        return self._slot_ctx

    @cached_property
    def metadata(self) -> dict[str, str]:
        return self._model.metadata()

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

    def token_bytes(self, token: int) -> bytes:
        return self._vocab.piece(token, special=False)

    @property
    def vocab_size(self) -> int:
        return self._vocab.n_tokens

    def token_text(self, token: int) -> str:
        return self._vocab.piece(token, special=True).decode("utf-8", "replace")

    @cached_property
    def control_texts(self) -> frozenset[str]:
        return self._vocab.control_texts()

    @property
    def bos_token(self) -> int | None:
        token = self._model.token_bos()
        return token if token >= 0 else None

    @property
    def eos_token(self) -> int | None:
        token = self._model.token_eos()
        return token if token >= 0 else None

    @property
    def adds_bos(self) -> bool:
        return bool(self._model.add_bos_token())

    def is_eog(self, token: int) -> bool:
        return self._vocab.is_eog(token)

    def close(self) -> None:
        self._scheduler.close()
        self._batch.close()
        self._close_model()

    # The scheduler's Decoder (owl/engine/scheduler.py), called on the engine thread only:
    @property
    def slots(self) -> int:
        return self._slots

    @property
    def batch_size(self) -> int:
        return BATCH_SIZE

    def forget(self, seq: int, start: int) -> None:
        self._context.forget(seq, start)

    def decode(self, pieces: list[Piece]) -> bool:
        batch = self._batch
        batch.clear()
        for piece in pieces:
            batch.add(
                piece.seq,
                piece.tokens,
                start=piece.start,
                logits_from=0 if piece.all_logits else None,
                last_logits=piece.logits,
            )
        status = self._context.decode(batch)
        if status == 1:
            return False
        if status != 0:
            raise EngineError(f"llama.cpp could not evaluate the batch (llama_decode {status})")
        return True

    def sampler(self, params: SamplingParams, history: list[int]) -> Any:
        text = [token for token in history if token >= 0]  # not the images' positions
        return make_sampler(self._model.vocab, self._vocab.n_tokens, params, text)

    # Images (a model loaded with its projector):
    def image_media(self, images: Sequence[Any]) -> list[Any]:
        """Each image (owl Pixels) as mtmd's chunks, to fill its MEDIA run of a prompt."""
        if self._projector is None:
            raise WrongModelKind(
                f"'{self._name}' cannot see images: it has no projector; pull a vision model "
                "with its projector (owl pull MODEL.gguf --mmproj PROJECTOR.gguf)"
            )
        from owl.engine.images import IMAGE_MARKER

        media = [
            self._projector.chunks(IMAGE_MARKER, [image], add_special=False) for image in images
        ]
        if any(chunks.n_pos != chunks.n_tokens for chunks in media):
            raise NotSupportedYet(
                f"'{self._name}' places image tokens in 2-D positions (M-RoPE, as Qwen2-VL "
                "does), which owl's scheduler does not do yet"
            )
        for chunks in media:  # here, on the caller's thread: the engine thread only decodes
            self._projector.encode(chunks)
        return media

    def prefill(self, tokens: list[int], media: Any, seq: int) -> None:
        assert self._projector is not None
        images = iter(media)
        position = index = 0
        while index < len(tokens):
            if tokens[index] == MEDIA:
                chunks = next(images)
                done = self._projector.prefill(
                    self._context, chunks, seq=seq, n_past=position, n_batch=BATCH_SIZE,
                    logits_last=False,
                )  # fmt: skip
                position, index = done.n_past, index + chunks.n_tokens
                continue
            end = index
            while end < len(tokens) and tokens[end] != MEDIA and end - index < BATCH_SIZE:
                end += 1
            self._batch.clear()
            self._batch.add(seq, tokens[index:end], start=position)
            status = self._context.decode(self._batch)
            if status == 1:
                raise ContextOverflow(
                    "the context has no room left for the images; retry later, or serve "
                    "with a larger --ctx"
                )
            if status != 0:
                raise EngineError(
                    f"llama.cpp could not evaluate the prompt (llama_decode {status})"
                )
            position, index = position + end - index, end

    def sample(self, sampler: Any, index: int) -> int:
        return sample(sampler, self._context, index)

    def logprob(self, index: int, token: int, top: int) -> TokenLogprob:
        # The model's own distribution (before temperature and truncation), as OpenAI reports.
        logits = self._context.logits_at(index).astype(np.float64)
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        best: tuple[tuple[int, float], ...] = ()
        if top > 0:
            chosen = np.argpartition(-logprobs, top)[:top]
            chosen = chosen[np.argsort(-logprobs[chosen], kind="stable")]
            best = tuple((int(t), float(logprobs[t])) for t in chosen)
        return TokenLogprob(token, float(logprobs[token]), best)

    def free_sampler(self, sampler: Any) -> None:
        free_sampler(sampler)
