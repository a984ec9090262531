"""Model: a backend plus its chat template; prompts in, streamed text deltas out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from owl.engine.backend import Backend, Capability, Occupancy, TokenLogprob
from owl.engine.control_tokens import message_texts, plain_text_spans
from owl.engine.images import IMAGE_MARKER, Pixels
from owl.engine.sampling import SamplingParams
from owl.engine.stream import DeltaStream
from owl.engine.template import ChatTemplate
from owl.engine.textstream import TextStream
from owl.engine.worker import engine_thread
from owl.errors import (
    ContextOverflow,
    InvalidImage,
    InvalidParameter,
    InvalidPrompt,
    WrongModelKind,
)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Delta:
    """A piece of generated text; the last one carries finish_reason and usage.

    With logprobs asked for, `logprobs` has one entry per token consumed since the last
    Delta (text held back for a possible stop string or a split character comes later).
    `prompt` carries the prompt's own log-probabilities, in a first Delta of its own.
    """

    text: str
    finish_reason: str | None = None  # "stop" | "length"
    usage: Usage | None = None
    logprobs: tuple[TokenLogprob, ...] = ()
    prompt: tuple[TokenLogprob | None, ...] | None = None
    stop: str | None = None  # the stop string that ended it (Anthropic's stop_sequence)


class Model:
    """A loaded model for chat, completion and scoring: prompts in, streamed Deltas out.

    Its backend's scheduler runs the generations on the engine thread: batched (llama.cpp)
    or one at a time (transformers).
    """

    def __init__(
        self, backend: Backend, *, name: str, defaults: dict[str, Any] | None = None
    ) -> None:
        self.name = name
        self.backend = backend
        # The manifest's default sampling parameters; keys owl does not know are ignored.
        self.defaults = {
            key: value
            for key, value in (defaults or {}).items()
            if key in SamplingParams.model_fields
        }
        bos, eos = backend.bos_token, backend.eos_token
        self._bos_text = backend.token_text(bos) if bos is not None else ""
        self.template = ChatTemplate(
            backend.metadata.get("tokenizer.chat_template"),
            bos_token=self._bos_text,
            eos_token=backend.token_text(eos) if eos is not None else "",
        )

    @property
    def capabilities(self) -> frozenset[Capability]:
        return self.backend.capabilities

    @property
    def memory_bytes(self) -> int:
        """The memory the loaded model takes (an estimate: weights, KV cache, margin)."""
        return self.backend.memory_bytes

    def occupancy(self) -> Occupancy:
        return self.backend.scheduler.occupancy()

    @property
    def slots(self) -> int:
        """Generations the model runs at once."""
        return self.occupancy().slots

    def sampling(self, **given: Any) -> SamplingParams:
        """Sampling parameters: the model's defaults, overridden by the non-None `given`."""
        chosen = {key: value for key, value in given.items() if value is not None}
        try:
            return SamplingParams(**{**self.defaults, **chosen})
        except ValidationError as err:  # values a request or a flag sent: the caller's to fix
            first = err.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "sampling"
            raise InvalidParameter(param=field, reason=first["msg"]) from None

    @property
    def n_ctx(self) -> int:
        return self.backend.n_ctx

    def _tokenize_prompt(self, prompt: str) -> list[int]:
        # A template that writes the BOS text itself must not get a second BOS.
        add_bos = self.backend.adds_bos and not (
            self._bos_text and prompt.startswith(self._bos_text)
        )
        return self.backend.tokenize(prompt, add_bos=add_bos, special=True)

    def chat_tokens(self, messages: list[dict[str, Any]]) -> list[int]:
        """The prompt tokens for a conversation, through the model's own chat template.

        Message text never becomes control tokens (see owl/engine/control_tokens.py).
        """
        prompt = self.template.render(messages, add_generation_prompt=True)
        spans = plain_text_spans(prompt, message_texts(messages), self.backend.control_texts)
        if not spans:
            return self._tokenize_prompt(prompt)
        tokens: list[int] = []
        cursor = 0
        for start, end in spans:
            markup = prompt[cursor:start]
            tokens += self._tokenize_prompt(markup) if cursor == 0 else self._markup(markup)
            tokens += self.backend.tokenize(prompt[start:end], add_bos=False, special=False)
            cursor = end
        return tokens + self._markup(prompt[cursor:])

    def require_sight(self) -> None:
        """WrongModelKind, saying what to use, unless the model can see images."""
        if Capability.SEE not in self.capabilities:
            raise WrongModelKind(
                f"'{self.name}' cannot see images; use a vision model with its projector "
                "(owl pull MODEL.gguf --mmproj PROJECTOR.gguf)"
            )

    def chat_media(
        self, messages: list[dict[str, Any]], images: list[Pixels]
    ) -> tuple[list[int], list[Any]]:
        """The prompt of a conversation whose messages hold IMAGE_MARKER where each of
        `images` goes: its tokens, with a run of MEDIA for each image's tokens, and the
        media that fill them (for generate's `media`). Message text stays plain text, as in
        chat_tokens; WrongModelKind for a model that cannot see."""
        from owl.engine.scheduler import MEDIA

        self.require_sight()
        prompt = self.template.render(messages, add_generation_prompt=True)
        if prompt.count(IMAGE_MARKER) != len(images):
            raise InvalidImage(
                f"'{self.name}''s chat template kept {prompt.count(IMAGE_MARKER)} of the "
                f"{len(images)} images; send them in user messages"
            )
        if prompt.endswith(IMAGE_MARKER):  # checked before the images are encoded
            raise InvalidImage("the prompt ends with an image; the template must add text after it")
        media = self.backend.image_media(images)  # type: ignore[attr-defined]
        texts = [piece for text in message_texts(messages) for piece in text.split(IMAGE_MARKER)]
        spans = plain_text_spans(prompt, texts, self.backend.control_texts)
        tokens: list[int] = []
        cursor, image = 0, 0
        for start, end in [*spans, (len(prompt), len(prompt))]:
            for index, markup in enumerate(prompt[cursor:start].split(IMAGE_MARKER)):
                if index:
                    tokens += [MEDIA] * media[image].n_tokens
                    image += 1
                tokens += self._tokenize_prompt(markup) if not tokens else self._markup(markup)
            tokens += self.backend.tokenize(prompt[start:end], add_bos=False, special=False)
            cursor = end
        return tokens, media

    def _markup(self, text: str) -> list[int]:
        return self.backend.tokenize(text, add_bos=False, special=True) if text else []

    def text_tokens(self, prompt: str) -> list[int]:
        """The prompt tokens for raw text (completions); "" starts from BOS, as OpenAI allows."""
        tokens = self._tokenize_prompt(prompt)
        if not tokens and self.backend.bos_token is not None:
            tokens = [self.backend.bos_token]
        return tokens

    def generate(
        self,
        prompt_tokens: list[int],
        params: SamplingParams,
        *,
        prompt_logprobs: int | None = None,
        sample: bool = True,
        cache_prompt: bool = True,
        group: object | None = None,
        media: Any = None,
    ) -> DeltaStream[Delta]:
        """Stream text for `prompt_tokens` (with `media` for their images: chat_media); the
        last Delta has finish_reason and usage.

        Generation runs on the engine thread — batched with the other generations where
        the backend can, else one at a time (its scheduler) — ahead of the reader; close the
        stream to stop it early. `prompt_logprobs` scores the prompt first (with that many
        alternatives per token); `sample=False` only scores it. `cache_prompt=False`
        evaluates the whole prompt even where a slot holds its prefix (see scheduler.py).
        Generations of one `group` (one request's choices) share the slots fairly with others.
        """
        if not prompt_tokens:
            raise InvalidPrompt(
                "the prompt is empty and the model has no BOS token; give some text"
            )
        room = self.n_ctx - len(prompt_tokens)
        if room <= 0:
            raise ContextOverflow(
                f"the prompt is {len(prompt_tokens)} tokens but the context window is "
                f"{self.n_ctx}; shorten the prompt or load the model with a larger context (--ctx)"
            )
        limit = min(params.max_tokens or room, room)
        stream: DeltaStream[Delta] = DeltaStream()
        sink = TextSink(self.backend, stream, params, limit=limit, prompt_tokens=len(prompt_tokens))
        self.backend.scheduler.submit(
            list(prompt_tokens),
            params,
            sink,
            prompt_logprobs=prompt_logprobs,
            sample=sample,
            cache_prompt=cache_prompt,
            group=group,
            media=media,
        )
        return stream

    def chat(self, messages: list[dict[str, Any]], params: SamplingParams) -> DeltaStream[Delta]:
        """Stream the assistant's reply to `messages`."""
        return self.generate(self.chat_tokens(messages), params)

    def complete(self, prompt: str, params: SamplingParams) -> DeltaStream[Delta]:
        """Stream the continuation of `prompt`."""
        return self.generate(self.text_tokens(prompt), params)

    def close(self, *, cancel: bool = False) -> None:
        """Free the model once the generations queued before this call have finished;
        with `cancel`, end them first (each reader still gets its final Delta)."""
        scheduler = self.backend.scheduler
        if cancel:
            scheduler.abort()
        scheduler.wait_idle()
        engine_thread().submit(self.backend.close).result()


class TextSink:
    """A generation's tokens → text Deltas: stop strings, end of text, the token limit."""

    def __init__(
        self,
        backend: Backend,
        stream: DeltaStream[Delta],
        params: SamplingParams,
        *,
        limit: int,
        prompt_tokens: int,
    ) -> None:
        self.backend = backend
        self.stream = stream
        self.text = TextStream(params.stop)
        self.limit = limit
        self.prompt_tokens = prompt_tokens
        self.count = 0
        self.finish = "length"
        self.logprobs: list[TokenLogprob] = []

    @property
    def cancelled(self) -> bool:
        return self.stream.cancelled

    def prompt_logprobs(self, logprobs: list[TokenLogprob | None]) -> None:
        self.stream.put(Delta("", prompt=tuple(logprobs)))

    def token(self, token: int, logprob: TokenLogprob | None) -> bool:
        if self.stream.cancelled:
            return False
        if self.backend.is_eog(token):
            # Its entry still comes (text ""): lm-eval reads the last entry of an echoed
            # prompt as the generated token's, whichever token that is.
            if logprob is not None:
                self.logprobs.append(logprob)
            self.finish = "stop"
            return False
        self.count += 1
        if logprob is not None:
            self.logprobs.append(logprob)
        text = self.text.push(self.backend.token_bytes(token))
        if text:
            self.stream.put(Delta(text, logprobs=self._take_logprobs()))
        if self.text.stopped:
            self.finish = "stop"
            return False
        return self.count < self.limit

    def _take_logprobs(self) -> tuple[TokenLogprob, ...]:
        taken, self.logprobs = tuple(self.logprobs), []
        return taken

    def end(self, error: BaseException | None = None) -> None:
        if error is not None:
            self.stream.fail(error)
            return
        usage = Usage(self.prompt_tokens, self.count)
        last = Delta(
            self.text.flush(),
            finish_reason=self.finish,
            usage=usage,
            logprobs=self._take_logprobs(),
            stop=self.text.matched,
        )
        self.stream.put(last)
        self.stream.end()
