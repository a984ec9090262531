"""The tokenizer's routes, in vLLM's shape: GET /tokenizer_info, POST /tokenize, /detokenize.

lm-evaluation-harness (`tokenizer_backend=remote`) counts a prompt's tokens through these,
so its context lengths are owl's own; llama-server's `/tokenize {"content"}` is answered on
the same path. A prompt is tokenized exactly as /v1/completions tokenizes it, a
conversation as /v1/chat/completions renders it. The model is named by `model` (in the
body, or `?model=` for GET); left out, it is the only model loaded, or the only one stored.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import ConfigDict, Field, model_validator
from starlette.concurrency import run_in_threadpool

from owl.engine import Capability, Model, capabilities_of
from owl.errors import InvalidParameter
from owl.server import serving
from owl.server.body_checks import CheckedBody
from owl.server.openai.protocol import ChatMessage
from owl.server.pool import ModelPool
from owl.store import Manifest

router = APIRouter()

MAX_DETOKENIZE = 1 << 20  # ids in one /detokenize: far past any context window


class TokenizeRequest(CheckedBody):
    """vLLM's {"prompt"} or {"messages"}, or llama-server's {"content"}: one of them."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, min_length=1, max_length=512)
    prompt: str | None = None
    messages: list[ChatMessage] | None = Field(default=None, min_length=1)
    content: str | None = None  # llama-server's name for the prompt
    add_special_tokens: bool | None = None  # vLLM's: BOS where the model wants it (default)
    add_special: bool | None = None  # llama-server's (default false)

    @model_validator(mode="after")
    def _one_input(self) -> TokenizeRequest:
        given = [self.prompt is not None, self.messages is not None, self.content is not None]
        if sum(given) != 1:
            raise ValueError("give one of 'prompt', 'messages' or 'content' to tokenize")
        if self.messages and any(message.image_urls() for message in self.messages):
            raise ValueError("/tokenize takes text messages; leave the images out")
        return self

    def adds_special(self) -> bool:
        if self.content is not None:
            return bool(self.add_special)
        return self.add_special_tokens is not False


class DetokenizeRequest(CheckedBody):
    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(default=None, min_length=1, max_length=512)
    tokens: list[int] = Field(max_length=MAX_DETOKENIZE)


def only_model(pool: ModelPool) -> str:
    """The model a request that names none means: the only text model loaded, else the only
    one stored, else the server's default model when it is stored (lm-eval's remote
    tokenizer never names one); InvalidParameter when that is not one model."""

    def scores(manifest: Manifest) -> bool:
        return Capability.SCORE in capabilities_of(manifest, store=pool.store)

    stored = [manifest for manifest in pool.store.list() if scores(manifest)]
    names = [manifest.display_name for manifest in stored]
    loaded = [name for name in pool.loaded() if name in names]
    if len(loaded) == 1:
        return loaded[0]
    if len(names) == 1:
        return names[0]
    default = pool.settings.default_model
    if default in names:
        return default
    raise InvalidParameter(
        param="model",
        reason=f"this server has {len(names)} text models; name one (?model= for GET "
        "/tokenizer_info); GET /v1/models lists them",
    )


async def _model(request: Request, name: str | None) -> Model:
    if not name:
        name = await run_in_threadpool(only_model, serving.pool_of(request))
    return await serving.load(request, name)


def _text(model: Model, token: int | None) -> str | None:
    return None if token is None else model.backend.token_text(token)


def _pad_token(model: Model) -> int | None:
    value = model.backend.metadata.get("tokenizer.ggml.padding_token_id")
    try:
        token = int(value) if value is not None else -1
    except ValueError:
        return None
    return token if 0 <= token < model.backend.vocab_size else None


@router.get("/tokenizer_info")
async def tokenizer_info(request: Request, model: str | None = None) -> dict[str, Any]:
    """The model's special tokens, chat template and context window, as vLLM names them."""
    loaded = await _model(request, model)
    backend = loaded.backend
    return {
        "model": loaded.name,
        "tokenizer_class": "owl",
        "bos_token": _text(loaded, backend.bos_token),
        "eos_token": _text(loaded, backend.eos_token),
        "pad_token": _text(loaded, _pad_token(loaded)),
        "add_bos_token": backend.adds_bos,
        "chat_template": backend.metadata.get("tokenizer.chat_template"),
        "model_max_length": loaded.n_ctx,
    }


def _tokens(model: Model, body: TokenizeRequest) -> list[int]:
    if body.messages is not None:
        return model.chat_tokens([message.as_template_input() for message in body.messages])
    text = body.prompt if body.prompt is not None else body.content
    assert text is not None
    if body.adds_special():
        return model.text_tokens(text)  # the tokens /v1/completions evaluates
    return model.backend.tokenize(text, add_bos=False, special=True)


@router.post("/tokenize")
async def tokenize(body: TokenizeRequest, request: Request) -> dict[str, Any]:
    """{"tokens", "count", "max_model_len"}: the ids owl evaluates for this input."""
    model = await _model(request, body.model)
    tokens = await run_in_threadpool(_tokens, model, body)
    return {"tokens": tokens, "count": len(tokens), "max_model_len": model.n_ctx}


def _detokenized(model: Model, tokens: list[int]) -> str:
    return serving.text_of(model, serving.checked_tokens(model, tokens))


@router.post("/detokenize")
async def detokenize(body: DetokenizeRequest, request: Request) -> dict[str, str]:
    """{"prompt"}: the text of `tokens`, control tokens written as their text."""
    model = await _model(request, body.model)
    return {"prompt": await run_in_threadpool(_detokenized, model, body.tokens)}
