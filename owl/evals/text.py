"""Evaluation text: read it as llama-perplexity does, and cut its tokens into chunks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from owl.errors import EvalError, SourceNotFound

MIN_CTX = 4  # the smallest chunk whose second half still predicts a token


def read_text(path: Path) -> str:
    """The text of a UTF-8 file, less one trailing newline (llama-perplexity's `-f`)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SourceNotFound(f"no text file at {path}; give an existing UTF-8 file") from None
    except IsADirectoryError:
        raise EvalError(f"{path} is a folder; give a UTF-8 text file") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise EvalError(
            f"{path} is not UTF-8 text (byte {err.start} does not decode); give a plain text file"
        ) from None
    if text.endswith("\n"):
        text = text[:-1]
    if not text.strip():
        raise EvalError(f"{path} is empty; give a text of at least a few thousand words")
    return text


def first_scored(ctx: int) -> int:
    """The first position of a chunk whose prediction is scored: the second half only."""
    return ctx // 2


def scored_per_chunk(ctx: int) -> int:
    """Tokens scored in each chunk: positions ctx/2 … ctx-2 predict the tokens after them."""
    return ctx - 1 - first_scored(ctx)


def chunks(tokens: Sequence[int], *, ctx: int, bos: int | None, source: str) -> list[list[int]]:
    """Non-overlapping chunks of `ctx` tokens, the remainder dropped (llama-perplexity's way).

    With `bos` (the vocabulary asks for one) each chunk's first token is replaced by BOS;
    the token it replaces is never scored, as it sits in the first half. EvalError when the
    text does not fill one chunk (llama-perplexity asks for two, 2*ctx tokens, for no reason
    its method needs: from one chunk on, owl gives the number it would).
    """
    if ctx < MIN_CTX:
        raise EvalError(f"the context must be at least {MIN_CTX} tokens, not {ctx}")
    if len(tokens) < ctx:
        raise EvalError(
            f"{source} has only {len(tokens)} tokens, but a context of {ctx} needs at least "
            f"{ctx} (one chunk); give a longer text or a smaller --ctx"
        )
    cut = []
    for start in range(0, len(tokens) - ctx + 1, ctx):
        chunk = list(tokens[start : start + ctx])
        if bos is not None:
            chunk[0] = bos
        cut.append(chunk)
    return cut
