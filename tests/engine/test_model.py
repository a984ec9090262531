"""The real bundled model through owl's engine: sampling, stops, limits, the lock."""

from __future__ import annotations

import threading

import pytest

from owl.engine import Delta, Model, SamplingParams
from owl.errors import ContextOverflow, InvalidPrompt

pytestmark = pytest.mark.slow
GREEDY = SamplingParams(temperature=0, max_tokens=24)
QUESTION = [{"role": "user", "content": "Name three colours of the rainbow."}]


def _text(deltas: list[Delta]) -> str:
    return "".join(delta.text for delta in deltas)


def test_chat_answers_through_the_models_own_template(shared_model: Model) -> None:
    tokens = shared_model.chat_tokens(QUESTION)
    # SmolLM2's template starts with <|im_start|> (token 1) and adds a default system turn.
    assert tokens[0] == 1
    assert shared_model.backend.token_text(tokens[0]) == "<|im_start|>"
    deltas = list(shared_model.chat(QUESTION, GREEDY))
    last = deltas[-1]
    assert _text(deltas).strip()
    assert last.finish_reason in ("stop", "length")
    assert last.usage is not None and last.usage.prompt_tokens == len(tokens)
    assert all(delta.finish_reason is None for delta in deltas[:-1])


def test_greedy_is_deterministic_and_max_tokens_is_exact(shared_model: Model) -> None:
    first = list(shared_model.complete("Once upon a time", GREEDY))
    second = list(shared_model.complete("Once upon a time", GREEDY))
    assert _text(first) == _text(second)
    assert first[-1].finish_reason == "length"
    assert first[-1].usage is not None and first[-1].usage.completion_tokens == 24


def test_same_seed_same_sample(shared_model: Model) -> None:
    params = SamplingParams(
        temperature=1.0, top_k=0, top_p=1.0, min_p=0.0, seed=1234, max_tokens=20
    )
    runs = {_text(list(shared_model.complete("My favourite animal is", params))) for _ in range(2)}
    assert len(runs) == 1


def test_stop_strings_end_the_text_before_them(shared_model: Model) -> None:
    full = _text(list(shared_model.complete("Once upon a time", GREEDY)))
    words = full.split()
    assert len(words) > 3
    stop = words[2]
    cut = list(
        shared_model.complete("Once upon a time", GREEDY.model_copy(update={"stop": (stop,)}))
    )
    assert _text(cut) == full[: full.index(stop)]
    assert cut[-1].finish_reason == "stop"


def test_prompt_longer_than_the_context_is_refused(shared_model: Model) -> None:
    long_prompt = "word " * (shared_model.n_ctx + 10)
    with pytest.raises(ContextOverflow, match="context window"):
        shared_model.complete(long_prompt, GREEDY)
    with pytest.raises(InvalidPrompt, match="empty"):
        shared_model.generate([], GREEDY)
    # An empty completion prompt starts from BOS, as OpenAI's API allows.
    assert shared_model.text_tokens("") == [shared_model.backend.bos_token]


def test_generation_stops_at_the_end_of_the_context(shared_model: Model) -> None:
    prompt = shared_model.text_tokens("word " * (shared_model.n_ctx - 5))
    room = shared_model.n_ctx - len(prompt)
    deltas = list(shared_model.generate(prompt, SamplingParams(temperature=0)))
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.completion_tokens <= room


def test_abandoned_stream_frees_the_model(shared_model: Model) -> None:
    stream = shared_model.complete("Once upon a time", GREEDY)
    next(stream)
    stream.close()  # a client that went away
    assert _text(list(shared_model.complete("Once upon a time", GREEDY)))


def test_concurrent_generations_do_not_mix(shared_model: Model) -> None:
    prompts = ["The capital of France is", "def fibonacci(n):", "Roses are red,"]
    alone = {prompt: _text(list(shared_model.complete(prompt, GREEDY))) for prompt in prompts}
    together: dict[str, str] = {}

    def worker(prompt: str) -> None:
        together[prompt] = _text(list(shared_model.complete(prompt, GREEDY)))

    threads = [threading.Thread(target=worker, args=(prompt,)) for prompt in prompts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert together == alone


def test_the_manifests_defaults_apply_unless_overridden(shared_model: Model) -> None:
    assert shared_model.defaults == {"temperature": 0.2, "top_p": 0.9}
    assert (shared_model.sampling().temperature, shared_model.sampling().top_p) == (0.2, 0.9)
    chosen = shared_model.sampling(temperature=0.7, top_p=None, stop=("\n",))
    assert (chosen.temperature, chosen.top_p, chosen.stop) == (0.7, 0.9, ("\n",))
    ignored = Model(shared_model.backend, name="x", defaults={"temperature": 0.5, "mirostat": 2})
    assert ignored.defaults == {"temperature": 0.5}
