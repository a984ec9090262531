"""Log-probabilities as OpenAI writes them: chat's per-token objects, completions' lists."""

from __future__ import annotations

from collections.abc import Sequence

from owl.engine import Model, TokenLogprob
from owl.server.openai.protocol import (
    ChatLogprobs,
    CompletionLogprobs,
    TokenLogprobBody,
    TopLogprob,
)


def _token(model: Model, token: int) -> tuple[str, list[int]]:
    raw = model.backend.token_bytes(token) or model.backend.token_text(token).encode()
    return raw.decode("utf-8", "replace"), list(raw)


def chat_logprobs(model: Model, entries: Sequence[TokenLogprob]) -> ChatLogprobs:
    """Chat's `logprobs`: {"content": [{token, logprob, bytes, top_logprobs}]}."""
    content = []
    for entry in entries:
        text, raw = _token(model, entry.token)
        top = []
        for token, logprob in entry.top:
            alt_text, alt_raw = _token(model, token)
            top.append(TopLogprob(token=alt_text, logprob=logprob, bytes=alt_raw))
        content.append(
            TokenLogprobBody(token=text, logprob=entry.logprob, bytes=raw, top_logprobs=top)
        )
    return ChatLogprobs(content=content)


def completion_logprobs(
    model: Model,
    entries: Sequence[TokenLogprob | None],
    tokens: Sequence[int],
    *,
    offset: int = 0,
) -> CompletionLogprobs:
    """The completions API's legacy `logprobs`: tokens, token_logprobs, top_logprobs (a
    dict per token), text_offset. `tokens` are the ids `entries` are for (the first
    prompt token has no entry: None)."""
    texts, token_logprobs, tops, offsets = [], [], [], []
    for token, entry in zip(tokens, entries, strict=True):
        text, _ = _token(model, token)
        texts.append(text)
        offsets.append(offset)
        offset += len(text)
        token_logprobs.append(None if entry is None else entry.logprob)
        tops.append(None if entry is None else {_token(model, t)[0]: lp for t, lp in entry.top})
    return CompletionLogprobs(
        tokens=texts, token_logprobs=token_logprobs, top_logprobs=tops, text_offset=offsets
    )
