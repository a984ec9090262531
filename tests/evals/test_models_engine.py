"""owl.evals.models: a stored model through owl's engine, on the real bundled SmolLM2.

The reference for every log-likelihood is the plain one: context+continuation decoded from
position 0 in one decode (Scorer.logits), log-softmax in numpy — what lm-eval computes for
each choice alone. owl decodes a question's context once and each choice after it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from owl.config import Settings
from owl.errors import AdapterMismatch, EvalError, ModelNotFound, UnsafeModel
from owl.evals.models import EngineModel, open_eval_model
from owl.evals.models.scoring import encode_pair, rolling_windows
from owl.evals.perplexity import token_nll
from owl.evals.tasks.request import Request
from owl.pull import pull
from owl.store import Store
from tests.support.gguf_edit import copy_with_template, shell_template
from tests.support.tiny_lora import ADAPTER, BASE, TinyLora, tiny_lora

pytestmark = pytest.mark.slow  # loads models

# The shared-context path against the plain one: the same numbers up to float rounding of
# a differently cut decode (measured: 0.0 on SmolLM2 Q4_1, CPU, one thread).
TOLERANCE = 1e-4

QUESTIONS = [
    ("Question: What is 3 + 5?\nAnswer:", [" 8", " 35", " eight", " 9 apples and more"]),
    ("The capital of France is ", ["Paris", "Lyon", "a city"]),  # trailing space moves
    ("", ["Hello world", "Paris"]),  # no context: scored after the prefix token
    ("Translate to French: cat =>", [" chat", " chien"]),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("eval-models") / "owl-home"


@pytest.fixture(scope="module")
def module_settings(home: Path) -> Settings:
    # One thread: on a shared machine llama.cpp's second thread spins (same numbers).
    return Settings(home=home, ctx=512, threads=1)


@pytest.fixture(scope="module")
def model(module_settings: Settings) -> Iterator[EngineModel]:
    store = Store(module_settings.home)
    pull("smollm2", store=store, settings=module_settings)
    opened = open_eval_model("smollm2", store=store, settings=module_settings)
    assert isinstance(opened, EngineModel)
    yield opened
    opened.close()


def plain(model: EngineModel, context: str, continuation: str) -> tuple[float, bool]:
    """lm-eval's arithmetic for one choice alone: (context+continuation)[:-1] from position 0."""
    scorer = model._scoring()
    head, tail = encode_pair(scorer, context, continuation)
    sequence = head + tail
    logits = scorer.logits(sequence[:-1], first=len(head) - 1)
    return float(-token_nll(logits, tail).sum()), bool((logits.argmax(-1) == tail).all())


def test_the_shared_context_gives_the_plain_numbers(model: EngineModel) -> None:
    requests = [
        Request("loglikelihood", context, choice)
        for context, choices in QUESTIONS
        for choice in choices
    ]
    answers = model.answer(requests)
    assert len(answers) == len(requests)
    for request, answer in zip(requests, answers, strict=True):
        logprob, greedy = plain(model, request.context, request.continuation)
        assert answer.logprob is not None and answer.logprob < 0
        assert abs(answer.logprob - logprob) <= TOLERANCE, (request, answer.logprob, logprob)
        assert answer.greedy is greedy
    # Tokens: the context once per question (with its first choice), every choice's own.
    scorer = model._scoring()
    expected = sum(
        len(encode_pair(scorer, context, choices[0])[0])
        + sum(len(encode_pair(scorer, context, choice)[1]) for choice in choices)
        for context, choices in QUESTIONS
    )
    assert sum(answer.tokens for answer in answers) == expected


def test_answers_come_back_in_order_whatever_the_kinds(model: EngineModel) -> None:
    ask = [
        Request("loglikelihood", "2 + 2 =", " 4"),
        Request("generate_until", "2 + 2 =", until=("\n",), max_tokens=4),
        Request("loglikelihood", "1 + 1 =", " 2"),
        Request("loglikelihood", "2 + 2 =", " 5"),
    ]
    answers = model.answer(ask)
    alone = [model.answer([request])[0] for request in ask]
    assert [a.logprob for a in answers] == [a.logprob for a in alone]
    assert answers[1].text == alone[1].text and answers[1].logprob is None


def test_greedy_holds_for_the_models_own_greedy_continuation(model: EngineModel) -> None:
    context = "The capital of France is"
    generated = model.answer([Request("generate_until", context, until=(".",), max_tokens=6)])
    text = generated[0].text
    assert text == " Paris"  # stopped at the stop string, which is not kept
    assert generated[0].tokens > 0
    own, other = model.answer(
        [Request("loglikelihood", context, text), Request("loglikelihood", context, " Berlin")]
    )
    assert own.greedy is True and other.greedy is False
    assert own.logprob > other.logprob


def test_rolling_scores_every_token_after_the_prefix(model: EngineModel) -> None:
    text = "The quick brown fox jumps over the lazy dog. It was not amused."
    answer = model.answer([Request("loglikelihood_rolling", text)])[0]
    scorer = model._scoring()
    tokens = scorer.tokenize(text)
    assert scorer.bos is None and scorer.prefix is not None  # SmolLM2 adds no BOS
    logits = scorer.logits([scorer.prefix, *tokens[:-1]], first=0)
    assert answer.logprob == pytest.approx(-token_nll(logits, tokens).sum(), abs=TOLERANCE)
    assert answer.tokens == len(tokens)


def test_rolling_windows_are_lm_evals() -> None:
    """get_rolling_token_windows(range(34), -100, max_seq_len=10, context_len=1), made
    disjoint, as lm-eval's utils compute them."""
    windows = list(rolling_windows(list(range(34)), prefix=-100, window=10))
    assert windows == [
        ([-100], list(range(10))),
        ([9], list(range(10, 20))),
        ([19], list(range(20, 30))),
        (list(range(23, 30)), list(range(30, 34))),
    ]
    assert all(len((a + b)[:-1]) <= 10 for a, b in windows)
    assert list(rolling_windows([], prefix=0, window=4)) == []


def test_a_text_longer_than_the_context_is_scored_in_windows(
    tmp_path: Path, bundled_gguf: Path
) -> None:
    settings = Settings(home=tmp_path / "owl-home", ctx=16, threads=1)
    store = Store(settings.home)
    pull("smollm2", store=store, settings=settings)
    text = "One two three four five six seven eight nine ten. " * 4
    with open_eval_model("smollm2", store=store, settings=settings) as small:
        answer = small.answer([Request("loglikelihood_rolling", text)])[0]
        scorer = small._scoring()
        tokens = scorer.tokenize(text)
        expected = 0.0
        for context, targets in rolling_windows(tokens, prefix=scorer.prefix, window=16):
            sequence = (context + targets)[:-1]
            logits = scorer.logits(sequence, first=len(context) - 1)
            expected -= token_nll(logits, targets).sum()
    assert len(tokens) > 32
    assert answer.logprob == pytest.approx(expected, abs=TOLERANCE)
    # A choice longer than the whole context cannot be scored.
    with open_eval_model("smollm2", store=store, settings=settings) as small:
        with pytest.raises(EvalError, match="does not fit"):
            small.answer([Request("loglikelihood", "Count:", text)])


def test_chat_generation_follows_a_schema_and_offers_tools(model: EngineModel) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
    }
    weather = {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
    shaped, called, chatted = model.answer(
        [
            Request(
                "generate_until",
                "Where is the Eiffel tower? Answer in JSON.",
                chat=True,
                schema=schema,
                max_tokens=48,
            ),
            Request(
                "generate_until",
                "What is the weather in Paris? Use the tool.",
                chat=True,
                tools=[weather],
                max_tokens=48,
            ),
            Request("generate_until", "Say hello.", chat=True, max_tokens=8),
        ]
    )
    value = json.loads(shaped.text)
    assert set(value) == {"city", "country"}
    # The tools allow an answer in words too; SmolLM2 calls the tool here, greedily.
    assert called.tool_calls == [{"name": "weather", "arguments": {"city": "Paris"}}]
    assert called.text == ""
    assert chatted.text and chatted.tool_calls is None and chatted.tokens > 8


def test_references_that_do_not_resolve_or_fit(model: EngineModel, module_settings) -> None:
    store = Store(module_settings.home)
    with pytest.raises(ModelNotFound):
        open_eval_model("smollm2+no-such-adapter", store=store, settings=module_settings)
    with pytest.raises(AdapterMismatch, match="not a LoRA adapter"):
        open_eval_model("smollm2+smollm2", store=store, settings=module_settings)
    with pytest.raises(EvalError, match="stop sequences"):
        model.answer([Request("generate_until", "x", until=tuple(str(i) for i in range(17)))])


def test_an_unsafe_model_is_refused_before_it_loads(
    tmp_path: Path, store: Store, settings: Settings, bundled_gguf: Path
) -> None:
    marker = tmp_path / "pwned"
    evil = copy_with_template(bundled_gguf, tmp_path / "evil.gguf", shell_template(marker))
    pull(str(evil), store=store, settings=settings, name="evil")
    with pytest.raises(UnsafeModel, match="'evil' is unsafe"):
        open_eval_model("evil", store=store, settings=settings)
    assert not marker.exists()


# --- adapters -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> TinyLora:
    work = tmp_path_factory.getbasetemp()
    return tiny_lora(work, tmp_path_factory.mktemp("eval-lora") / "owl-home", bundled_gguf)


def test_an_adapter_applies_to_scoring_and_to_generation(lora: TinyLora) -> None:
    from owl import engine
    from owl.engine import SamplingParams

    context, choice = "Question: What is 3 + 5?\nAnswer:", " 8 apples"
    asked = [
        Request("loglikelihood", context, choice),
        Request("generate_until", context, max_tokens=8),
    ]
    with open_eval_model(
        f"{BASE}:f16+{ADAPTER}", store=lora.store, settings=lora.settings
    ) as tuned:
        assert tuned.label == f"{BASE}:f16+{ADAPTER}"
        assert tuned.digest == f"{lora.base.weights.digest}+{lora.adapter.weights.digest}"
        scored, generated = tuned.answer(asked)
        head, tail = encode_pair(tuned._scoring(), context, choice)
    with open_eval_model(f"{BASE}:f16", store=lora.store, settings=lora.settings) as base:
        base_scored, base_generated = base.answer(asked)
    assert not math.isclose(scored.logprob, base_scored.logprob, abs_tol=0.1)

    # The engine's own generation context with the adapter: its prompt logprobs, its text.
    loaded = engine.load(
        lora.base, store=lora.store, settings=lora.settings, adapters=[lora.adapter]
    )
    try:
        sequence = head + tail
        with loaded.generate(sequence, SamplingParams(), prompt_logprobs=0, sample=False) as s:
            prompt = next(delta.prompt for delta in s if delta.prompt is not None)
        with loaded.complete(context, SamplingParams(temperature=0.0, max_tokens=8)) as s:
            text = "".join(delta.text for delta in s)
    finally:
        loaded.close()
    expected = sum(entry.logprob for entry in prompt[len(head) :])
    # The generation context (its own batch size and KV layout): float rounding only
    # (measured 7.5e-9).
    assert scored.logprob == pytest.approx(expected, abs=TOLERANCE)
    assert generated.text == text
    assert np.isfinite(base_scored.logprob) and base_generated.text is not None
