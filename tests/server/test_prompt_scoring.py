"""Prompt scoring through the real `owl serve` and the real `openai` client, as
lm-evaluation-harness does it: `echo` with `logprobs`, and `max_tokens` 0 or 1.

A prompt's scores are the Scorer's (owl/engine/llama/scorer.py, what `owl eval` reads)
exactly, in whichever slot and whatever else the server runs; with `max_tokens` 1 the last
entry is the generated token's, an end of generation included (lm-eval sums
token_logprobs[ctxlen:-1]).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from owl.engine.llama.scorer import Scorer
from tests.server.conftest import SERVER_CTX, Server
from tests.support.openai_client import MODEL, assert_error_shape, make_client
from tests.support.owl_server import SERVER_THREADS

pytestmark = pytest.mark.slow

QUESTION = "Question: What is 3 + 5?\nAnswer: 35"  # the model's next token ends the text
STORY = " ".join(
    f"On day {day} the owl counted {day * 7 % 31} mice and {day * 3 % 17} moths."
    for day in range(1, 20)
)  # about 300 tokens: most of a batch, so that batching or chunking would show
SCORED_AT_ONCE = 4


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return make_client(server)


@pytest.fixture(scope="module")
def scorer(bundled_gguf: Path) -> Iterator[Scorer]:
    with Scorer(bundled_gguf, n_ctx=SERVER_CTX, threads=SERVER_THREADS) as opened:
        yield opened


def _tokens(server: Server, text: str) -> list[int]:
    body = {"model": MODEL, "prompt": text}
    response = httpx.post(f"{server.base}/tokenize", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()["tokens"]


def _reference(scorer: Scorer, tokens: list[int]) -> list[float]:
    """Each token's log-probability after the ones before it, from the Scorer's logits,
    in float64 as the server computes it (owl/engine/llama/backend.py)."""
    logits = scorer.logits(tokens, first=0).astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    logprobs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return [float(logprobs[i, tokens[i + 1]]) for i in range(len(tokens) - 1)]


def _scored(client: openai.OpenAI, text: str, *, max_tokens: int) -> openai.types.Completion:
    return client.completions.create(
        model=MODEL, prompt=text, max_tokens=max_tokens, logprobs=1, echo=True, temperature=0
    )


def test_the_generated_end_token_has_its_entry(server: Server, client: openai.OpenAI) -> None:
    prompt = _tokens(server, QUESTION)
    response = _scored(client, QUESTION, max_tokens=1)
    choice = response.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.token_logprobs is not None
    assert len(logprobs.token_logprobs) == len(prompt) + 1
    assert logprobs.token_logprobs[0] is None
    assert all(value is not None for value in logprobs.token_logprobs[1:])
    assert logprobs.top_logprobs is not None and logprobs.top_logprobs[-1]
    # The case this is about: the most likely next token ends the generation. Its entry
    # has no text (it is in no text), and the answer's text is the prompt's.
    assert choice.finish_reason == "stop"
    assert logprobs.tokens is not None and logprobs.tokens[-1] == ""
    assert choice.text == QUESTION
    assert max(logprobs.top_logprobs[-1].values()) == logprobs.token_logprobs[-1]


def test_with_echo_and_max_tokens_1_the_prompt_scores_are_the_score_only_ones(
    client: openai.OpenAI,
) -> None:
    scored = _scored(client, QUESTION, max_tokens=0).choices[0].logprobs
    generated = _scored(client, QUESTION, max_tokens=1).choices[0].logprobs
    assert scored is not None and generated is not None
    assert generated.token_logprobs is not None and scored.token_logprobs is not None
    assert generated.token_logprobs[:-1] == scored.token_logprobs


def test_prompts_scored_at_once_get_the_scorers_numbers_exactly(
    server: Server, client: openai.OpenAI, scorer: Scorer
) -> None:
    tokens = _tokens(server, STORY)
    expected = _reference(scorer, tokens)
    with ThreadPoolExecutor(SCORED_AT_ONCE + 1) as pool:
        # A generation runs beside them: its tokens share batches with their prompts.
        beside = pool.submit(
            client.completions.create, model=MODEL, prompt="Once upon a time", max_tokens=48
        )
        answers = list(
            pool.map(lambda _: _scored(client, STORY, max_tokens=0), range(SCORED_AT_ONCE))
        )
        assert beside.result().choices[0].text
    for answer in answers:
        logprobs = answer.choices[0].logprobs
        assert logprobs is not None and logprobs.token_logprobs is not None
        assert logprobs.token_logprobs[0] is None
        assert logprobs.token_logprobs[1:] == expected


# --- what lm-eval sends besides: token ids, several prompts in one request ---------------


def test_token_ids_score_as_their_text_does(server: Server, client: openai.OpenAI) -> None:
    tokens = _tokens(server, QUESTION)
    as_text = _scored(client, QUESTION, max_tokens=0).choices[0]
    as_ids = client.completions.create(
        model=MODEL, prompt=tokens, max_tokens=0, logprobs=1, echo=True
    ).choices[0]
    assert as_ids.text == QUESTION
    assert as_ids.logprobs == as_text.logprobs


def test_several_prompts_get_their_choices_in_order(client: openai.OpenAI) -> None:
    prompts = [QUESTION, STORY, "The three primary colors are"]
    alone = [_scored(client, prompt, max_tokens=1).choices[0] for prompt in prompts]
    together = client.completions.create(
        model=MODEL, prompt=prompts, max_tokens=1, logprobs=1, echo=True, temperature=0
    )
    assert [choice.index for choice in together.choices] == [0, 1, 2]
    for one, choice in zip(alone, together.choices, strict=True):
        assert (choice.text, choice.finish_reason) == (one.text, one.finish_reason)
        assert choice.logprobs is not None and one.logprobs is not None
        assert choice.logprobs.token_logprobs[:-1] == one.logprobs.token_logprobs[:-1]


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": [10**9], "max_tokens": 1},
        {"prompt": [[1, 2], [-1]], "max_tokens": 1},
        {"prompt": ["a", "b"], "stream": True},
        {"prompt": [[]], "max_tokens": 1},
    ],
    ids=["unknown-token", "negative-token", "stream-of-two", "empty-ids"],
)
def test_bad_prompts_are_400(server: Server, body: dict) -> None:
    response = httpx.post(f"{server.base}/v1/completions", json={"model": MODEL, **body})
    assert_error_shape(response, 400)
