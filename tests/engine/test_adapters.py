"""LoRA adapters at run time: llama.cpp applies a real GGUF LoRA (made by PEFT, converted by
llama.cpp's convert_lora_to_gguf.py through owl tune's export) to a tiny llama base, in the
engine, from `owl run --adapter`, and in the server as "BASE+ADAPTER".

The adapter's effect is checked against transformers + PEFT on the same float32 weights:
llama.cpp (f16 base, f16 adapter) agrees within the f16 tolerance of the architecture matrix
(tests/support/coverage.py); measured max |Δlogprob| ≈ 4e-4 on the fixed input.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest

from owl import engine
from owl.engine import Model, SamplingParams, TokenLogprob
from owl.errors import AdapterMismatch
from owl.pull import pull
from tests.support.cli import owl
from tests.support.coverage import TOLERANCE
from tests.support.owl_server import running_server
from tests.support.tiny_lora import ADAPTER, BASE, TinyLora, tiny_lora
from tests.support.tiny_models import INPUT_IDS

pytestmark = pytest.mark.slow  # loads models, starts servers

COMBINATION = f"{BASE}:f16+{ADAPTER}"
TOP = 5


@pytest.fixture(scope="module")
def lora(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> TinyLora:
    work = tmp_path_factory.getbasetemp()
    return tiny_lora(work, tmp_path_factory.mktemp("adapters") / "owl-home", bundled_gguf)


def greedy(model: Model, n: int = 8) -> tuple[list[int], tuple[TokenLogprob | None, ...]]:
    """The model's first `n` greedy tokens after INPUT_IDS, and the input's own logprobs."""
    tokens, prompt = [], ()
    params = SamplingParams(temperature=0, max_tokens=n, logprobs=0)
    with model.generate(INPUT_IDS, params, prompt_logprobs=TOP) as deltas:
        for delta in deltas:
            prompt = delta.prompt or prompt
            tokens += [logprob.token for logprob in delta.logprobs]
    return tokens, prompt


def run(lora: TinyLora, manifest, **options):  # noqa: ANN001, ANN201
    model = engine.load(manifest, store=lora.store, settings=lora.settings, **options)
    try:
        return model.name, greedy(model)
    finally:
        model.close()


def test_the_adapter_changes_the_answer_and_scale_zero_takes_it_away(lora: TinyLora) -> None:
    name, (base_tokens, _) = run(lora, lora.base)
    assert name == f"{BASE}:f16"
    name, (tuned_tokens, _) = run(lora, lora.base, adapters=[lora.adapter])
    assert name == COMBINATION
    assert tuned_tokens != base_tokens
    _, (off_tokens, _) = run(lora, lora.base, adapters=[lora.adapter], scales=[0.0])
    assert off_tokens == base_tokens
    # The adapter named alone brings its recorded base.
    name, (alone_tokens, _) = run(lora, lora.adapter)
    assert (name, alone_tokens) == (COMBINATION, tuned_tokens)


def test_llama_cpp_applies_the_adapter_as_peft_does(lora: TinyLora) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, (tokens, prompt) = run(lora, lora.base, adapters=[lora.adapter])
    base = AutoModelForCausalLM.from_pretrained(str(lora.folder), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(lora.peft)).eval()
    with torch.no_grad():
        logits = model(torch.tensor([INPUT_IDS])).logits[0]
        reference = torch.log_softmax(logits.float(), -1).numpy()
        expected = model.generate(
            torch.tensor([INPUT_IDS]), do_sample=False, max_new_tokens=len(tokens)
        )[0, len(INPUT_IDS) :].tolist()
    diffs = []
    for position, scored in enumerate(prompt):
        if scored is None:  # the first token has no prediction
            continue
        row = reference[position - 1]  # the distribution that predicted this token
        diffs.append(abs(scored.logprob - row[INPUT_IDS[position]]))
        diffs += [abs(logprob - row[token]) for token, logprob in scored.top]
        assert scored.top[0][0] == int(np.argmax(row))
    assert len(diffs) >= (TOP + 1) * (len(INPUT_IDS) - 1)
    assert max(diffs) <= TOLERANCE["f16"]["max"], max(diffs)
    assert tokens == expected


def test_an_adapter_for_another_base_is_refused(lora: TinyLora) -> None:
    smollm2 = pull("smollm2", store=lora.store, settings=lora.settings)
    with pytest.raises(AdapterMismatch, match="does not fit 'smollm2'.*tiny-llama:f16"):
        engine.load(smollm2, store=lora.store, settings=lora.settings, adapters=[lora.adapter])
    with pytest.raises(AdapterMismatch, match="not a LoRA adapter"):
        engine.load(lora.base, store=lora.store, settings=lora.settings, adapters=[smollm2])
    with pytest.raises(AdapterMismatch, match="2 adapter scale"):
        engine.load(
            lora.base,
            store=lora.store,
            settings=lora.settings,
            adapters=[lora.adapter],
            scales=[1.0, 1.0],
        )


def test_owl_run_applies_adapters_from_the_command_line(lora: TinyLora) -> None:
    home = lora.settings.home
    common = ("--temperature", "0", "--max-tokens", "8", "--threads", "1", "Hello")

    def answer(*args: str) -> str:
        done = owl(home, "run", *args, *common)
        assert done.returncode == 0, done.stderr
        return done.stdout

    base = answer(f"{BASE}:f16")
    tuned = answer(f"{BASE}:f16", "--adapter", ADAPTER)
    assert tuned.strip() and tuned != base
    assert answer(ADAPTER) == tuned  # an adapter runs on its base
    assert answer(COMBINATION) == tuned  # the server's spelling
    assert answer(f"{BASE}:f16", "--adapter", ADAPTER, "--adapter-scale", "0") == base
    pull("smollm2", store=lora.store, settings=lora.settings)
    refused = owl(home, "run", "smollm2", "--adapter", ADAPTER, *common)
    assert refused.returncode == 1
    assert "does not fit 'smollm2'" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_server_answers_base_plus_adapter(
    tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path
) -> None:
    from openai import BadRequestError, NotFoundError, OpenAI

    root = tmp_path_factory.mktemp("adapter-server")
    served = tiny_lora(tmp_path_factory.getbasetemp(), root / "owl-home", bundled_gguf)
    pull("smollm2", store=served.store, settings=served.settings)
    with running_server(root) as server:
        client = OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0)

        def answer(model: str) -> str:
            reply = client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Hello"}],
                temperature=0,
                max_tokens=8,
            )
            # The reply names what answered: the base with its adapters.
            assert reply.model == (COMBINATION if ADAPTER in model else model)
            return reply.choices[0].message.content or ""

        base = answer(f"{BASE}:f16")
        tuned = answer(f"{BASE}:f16+{ADAPTER}")
        assert tuned and tuned != base
        assert answer(ADAPTER) == tuned
        models = {model.id: model for model in client.models.list()}
        assert models[ADAPTER].owned_by == f"lora adapter of {BASE}:f16"
        assert models[f"{BASE}:f16"].owned_by == "owl"
        with pytest.raises(BadRequestError, match="does not fit"):
            answer(f"smollm2+{ADAPTER}")
        with pytest.raises(NotFoundError):
            answer(f"{BASE}:f16+no-such-adapter")
        # `owl stop ADAPTER` unloads the combination it runs in, not the plain base.
        stopped = httpx.delete(f"{server.base}/api/ps/{ADAPTER}", timeout=30).json()
        assert stopped["unloaded"] == [COMBINATION]
