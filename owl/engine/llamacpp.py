"""The llama.cpp backend, through llama-cpp-python's low-level API.

One llama.cpp context holds `slots` KV-cache sequences of `n_ctx` cells each — every
request gets the whole context window, as with `owl run` — and owl/engine/scheduler.py
batches the generations over them. LoRA adapters apply to the whole context (every slot), so
a base with adapters is a backend of its own; the base's weights are mmapped, shared by the
OS page cache with any other backend of the same file.
"""

from __future__ import annotations

import ctypes
import logging
import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from owl.engine.sampling import SamplingParams
from owl.engine.scheduler import Piece, Scheduler, Sink, TokenLogprob
from owl.engine.worker import engine_thread
from owl.errors import EngineError, InvalidPrompt


def quiet_llama_cpp() -> None:
    """Only llama.cpp's errors reach stderr: importing llama_cpp routes its log to stderr
    at every level, a thousand lines per context, until its logger gets a level."""
    logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)


# The last n tokens the repetition penalties look at: llama.cpp's default.
PENALTY_LAST_N = 64
BATCH_SIZE = 512


class LlamaCppBackend:
    """A GGUF model loaded in llama.cpp. Its scheduler owns the context; `submit` generates."""

    def __init__(
        self,
        path: Path,
        *,
        n_ctx: int,
        threads: int | None = None,
        slots: int = 1,
        adapters: Sequence[tuple[Path, float]] = (),
    ) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaContext, LlamaModel

        quiet_llama_cpp()

        self._llama_cpp = llama_cpp
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
        self._vocab = self._model.vocab
        self._n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        params = llama_cpp.llama_context_default_params()
        self._slot_ctx = n_ctx or self._model.n_ctx_train()
        params.n_ctx = self._slot_ctx * slots
        params.n_batch = BATCH_SIZE
        params.n_ubatch = BATCH_SIZE
        params.n_seq_max = slots
        # One KV stream per slot, and flash attention (where the model allows it): with
        # these a generation's numbers do not depend on what else is in the batch (a
        # unified cache changes them). A cached prefix still moves them slightly; see
        # cache_prompt in owl/engine/scheduler.py.
        params.kv_unified = False
        params.flash_attn_type = llama_cpp.LLAMA_FLASH_ATTN_TYPE_AUTO
        params.n_threads = threads
        params.n_threads_batch = threads
        params.no_perf = True
        try:
            self._context = LlamaContext(model=self._model, params=params, verbose=False)
        except ValueError as err:
            self._model.close()
            raise EngineError(
                f"llama.cpp could not make {slots} context(s) of {self._slot_ctx} tokens for "
                f"{path.name}; try a smaller --ctx or fewer --parallel slots"
            ) from err
        self._adapters: list[Any] = []
        try:
            self._apply_adapters(adapters)
        except EngineError:
            self._close_model()
            raise
        self._batch = llama_cpp.llama_batch_init(BATCH_SIZE, 0, 1)
        self._slots = slots
        self.scheduler = Scheduler(self, worker=engine_thread())

    def _apply_adapters(self, adapters: Sequence[tuple[Path, float]]) -> None:
        llama_cpp = self._llama_cpp
        for path, _ in adapters:
            adapter = llama_cpp.llama_adapter_lora_init(self._model.model, str(path).encode())
            if not adapter:
                raise EngineError(
                    f"llama.cpp could not load the LoRA adapter {path.name}: it is damaged, or "
                    "made for another base model (its tensors do not match this one's)"
                )
            self._adapters.append(adapter)
        if not adapters:
            return
        count = len(self._adapters)
        handles = (llama_cpp.llama_adapter_lora_p_ctypes * count)(*self._adapters)
        scales = (ctypes.c_float * count)(*(float(scale) for _, scale in adapters))
        if llama_cpp.llama_set_adapters_lora(self._context.ctx, handles, count, scales) != 0:
            raise EngineError("llama.cpp could not apply the LoRA adapters to the context")

    def _close_model(self) -> None:
        """Free the context, the adapters and the model (after the scheduler has stopped)."""
        self._context.close()
        for adapter in self._adapters:  # after the context that used them
            self._llama_cpp.llama_adapter_lora_free(adapter)
        self._adapters = []
        self._model.close()

    # The Backend protocol (owl/engine/backend.py):
    @property
    def n_ctx(self) -> int:
        """The context window of one generation (one slot)."""
        return self._slot_ctx

    @cached_property
    def metadata(self) -> dict[str, str]:
        return self._model.metadata()

    def tokenize(self, text: str, *, add_bos: bool, special: bool) -> list[int]:
        return self._model.tokenize(text.encode("utf-8"), add_bos=add_bos, special=special)

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
        return bool(self._llama_cpp.llama_vocab_is_eog(self._vocab, token))

    def submit(
        self,
        tokens: list[int],
        params: SamplingParams,
        sink: Sink,
        *,
        prompt_logprobs: int | None = None,
        sample: bool = True,
        cache_prompt: bool = True,
        group: object | None = None,
    ) -> None:
        """Generate for `tokens` in the running batch; sampled tokens go to `sink`
        (`group`: the request it belongs to, see Scheduler.submit)."""
        self.scheduler.submit(
            tokens,
            params,
            sink,
            prompt_logprobs=prompt_logprobs,
            sample=sample,
            cache_prompt=cache_prompt,
            group=group,
        )

    def generate(self, tokens: list[int], params: SamplingParams) -> Iterator[int]:
        raise EngineError("the llama.cpp backend generates through submit() (batched)")

    def close(self) -> None:
        self.scheduler.close()
        llama_batch_free = self._llama_cpp.llama_batch_free
        if self._batch is not None:
            llama_batch_free(self._batch)
            self._batch = None
        self._close_model()

    # The scheduler's Decoder (owl/engine/scheduler.py), called on the engine thread only:
    @property
    def slots(self) -> int:
        return self._slots

    @property
    def batch_size(self) -> int:
        return BATCH_SIZE

    def forget(self, seq: int, start: int) -> None:
        self._llama_cpp.llama_memory_seq_rm(self._context.memory, seq, start, -1)

    def decode(self, pieces: list[Piece]) -> bool:
        batch = self._batch
        n = 0
        for piece in pieces:
            for offset, token in enumerate(piece.tokens):
                batch.token[n] = token
                batch.pos[n] = piece.start + offset
                batch.n_seq_id[n] = 1
                batch.seq_id[n][0] = piece.seq
                batch.logits[n] = piece.all_logits
                n += 1
            if piece.logits:
                batch.logits[n - 1] = True
        batch.n_tokens = n
        status = self._llama_cpp.llama_decode(self._context.ctx, batch)
        if status == 1:
            return False
        if status != 0:
            raise EngineError(f"llama.cpp could not evaluate the batch (llama_decode {status})")
        return True

    def sampler(self, params: SamplingParams, history: list[int]) -> Any:
        llama_cpp = self._llama_cpp
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        add = llama_cpp.llama_sampler_chain_add
        penalised = (
            params.repeat_penalty != 1.0
            or params.frequency_penalty != 0.0
            or params.presence_penalty != 0.0
        )
        if penalised:
            add(
                chain,
                llama_cpp.llama_sampler_init_penalties(
                    llama_cpp.llama_vocab_n_tokens(self._vocab),
                    PENALTY_LAST_N,
                    params.repeat_penalty,
                    params.frequency_penalty,
                    params.presence_penalty,
                ),
            )
        if params.grammar is not None:
            grammar = llama_cpp.llama_sampler_init_grammar(
                self._vocab, params.grammar.encode("utf-8"), b"root"
            )
            if not grammar:
                llama_cpp.llama_sampler_free(chain)
                raise InvalidPrompt(
                    "llama.cpp could not parse the output grammar; check the JSON schema "
                    "or GBNF given"
                )
            add(chain, grammar)
        if params.temperature <= 0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            seed = llama_cpp.LLAMA_DEFAULT_SEED if params.seed is None else params.seed
            if params.top_k > 0:
                add(chain, llama_cpp.llama_sampler_init_top_k(params.top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(params.top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(params.min_p, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(params.temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(seed))
        if penalised:
            for token in history[-PENALTY_LAST_N:]:
                llama_cpp.llama_sampler_accept(chain, token)
        return chain

    def sample(self, sampler: Any, index: int) -> int:
        # llama_sampler_sample also accepts the token into the chain (penalties, grammar).
        return self._llama_cpp.llama_sampler_sample(sampler, self._context.ctx, index)

    def logprob(self, index: int, token: int, top: int) -> TokenLogprob:
        # The model's own distribution (before temperature and truncation), as OpenAI reports.
        pointer = self._llama_cpp.llama_get_logits_ith(self._context.ctx, index)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).astype(np.float64)
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        best: tuple[tuple[int, float], ...] = ()
        if top > 0:
            chosen = np.argpartition(-logprobs, top)[:top]
            chosen = chosen[np.argsort(-logprobs[chosen], kind="stable")]
            best = tuple((int(t), float(logprobs[t])) for t in chosen)
        return TokenLogprob(token, float(logprobs[token]), best)

    def free_sampler(self, sampler: Any) -> None:
        self._llama_cpp.llama_sampler_free(sampler)
