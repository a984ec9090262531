"""Sampling parameters, validated once, shared by the CLI, the server and every backend."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_TOP_K = 2**31 - 1


class SamplingParams(BaseModel):
    """How to pick each next token, and when to stop.

    Defaults follow llama.cpp's (temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, no
    repeat penalty); temperature 0 is greedy decoding.
    """

    # NaN passes every bound check (all comparisons are false): refuse it by name.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    temperature: float = Field(default=0.8, ge=0.0, le=5.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    # llama.cpp takes top_k as an int32; no vocabulary comes near that.
    top_k: int = Field(default=40, ge=0, le=MAX_TOP_K, description="0 keeps every token.")
    min_p: float = Field(default=0.05, ge=0.0, le=1.0)
    repeat_penalty: float = Field(default=1.0, gt=0.0, le=10.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    seed: int | None = Field(default=None, ge=0, lt=2**32 - 1)
    stop: tuple[str, ...] = Field(default=(), max_length=16)
    max_tokens: int | None = Field(
        default=None, ge=1, description="None: until the model stops or the context is full."
    )
    grammar: str | None = Field(
        default=None,
        max_length=1_000_000,
        description="A GBNF grammar (llama.cpp's) the output must follow.",
    )
    logprobs: int | None = Field(
        default=None,
        ge=0,
        le=20,
        description="Report each token's log-probability and this many top alternatives.",
    )
