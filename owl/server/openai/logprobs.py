"""Log-probabilities as OpenAI writes them: chat's per-token objects, completions' lists."""

from __future__ import annotations

from collections.abc import Sequence

from owl.engine import Model, TokenLogprob
from owl.server.openai.bodies import (
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
        if model.backend.is_eog(entry.token):
            continue  # the end of the message is not part of its content (as OpenAI does)
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
    generated: bool = True,
) -> CompletionLogprobs:
    """The completions API's legacy `logprobs`: tokens, token_logprobs, top_logprobs (a
    dict per token), text_offset. `tokens` are the ids `entries` are for (the first
    prompt token has no entry: None). When the last token is `generated`, an end of
    generation there reads "": it is in no text, and it still has its entry."""
    texts, token_logprobs, tops, offsets = [], [], [], []
    last = len(tokens) - 1
    for index, (token, entry) in enumerate(zip(tokens, entries, strict=True)):
        ended = generated and index == last and model.backend.is_eog(token)
        text = "" if ended else _token(model, token)[0]
        texts.append(text)
        offsets.append(offset)
        offset += len(text)
        token_logprobs.append(None if entry is None else entry.logprob)
        tops.append(None if entry is None else {_token(model, t)[0]: lp for t, lp in entry.top})
    return CompletionLogprobs(
        tokens=texts, token_logprobs=token_logprobs, top_logprobs=tops, text_offset=offsets
    )
