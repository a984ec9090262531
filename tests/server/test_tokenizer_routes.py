"""The tokenizer routes (vLLM's /tokenizer_info, /tokenize, /detokenize, and llama-server's
/tokenize {"content"}) against a real `owl serve`: the ids are the ones owl evaluates.

lm-evaluation-harness's remote tokenizer calls them at the server's root, without a model
name: `eos_token` from /tokenizer_info, its id as the first of /tokenize {"prompt": it,
"add_special_tokens": false}, and /detokenize {"tokens"} → {"prompt"}.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from owl.engine import Model
from tests.server.conftest import SERVER_CTX, Server
from tests.support.openai_client import HI, MODEL, PROMPT, assert_error_shape, make_client

pytestmark = pytest.mark.slow

TEXT = "Grüße, 世界! The tokenizer's round trip:\n\tcode = [1, 2]  # ok"


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return make_client(server)


def _tokenize(http: httpx.Client, **body: object) -> dict:
    response = http.post("/tokenize", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_tokenize_gives_owls_own_tokens_and_detokenize_gives_the_text_back(
    http: httpx.Client, shared_model: Model
) -> None:
    body = _tokenize(http, model=MODEL, prompt=TEXT)
    assert body["tokens"] == shared_model.text_tokens(TEXT)
    assert body["count"] == len(body["tokens"])
    assert body["max_model_len"] == SERVER_CTX
    plain = _tokenize(http, prompt=TEXT, add_special_tokens=False)["tokens"]  # no model named
    assert plain == shared_model.backend.tokenize(TEXT, add_bos=False, special=True)
    back = http.post("/detokenize", json={"model": MODEL, "tokens": plain})
    assert back.status_code == 200, back.text
    assert back.json() == {"prompt": TEXT}


def test_the_count_is_what_a_completion_evaluates(
    http: httpx.Client, client: openai.OpenAI
) -> None:
    count = _tokenize(http, model=MODEL, prompt=PROMPT)["count"]
    response = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=1)
    assert response.usage is not None and response.usage.prompt_tokens == count


def test_messages_are_tokenized_through_the_chat_template(
    http: httpx.Client, client: openai.OpenAI, shared_model: Model
) -> None:
    body = _tokenize(http, model=MODEL, messages=HI)
    assert body["tokens"] == shared_model.chat_tokens(HI)
    response = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)  # type: ignore[arg-type]
    assert response.usage is not None and response.usage.prompt_tokens == body["count"]


def test_llama_servers_content_shape_is_answered_on_the_same_path(
    http: httpx.Client, shared_model: Model
) -> None:
    body = _tokenize(http, content=TEXT)
    assert body["tokens"] == shared_model.backend.tokenize(TEXT, add_bos=False, special=True)


def test_tokenizer_info_gives_what_lm_evals_remote_tokenizer_reads(
    http: httpx.Client, shared_model: Model
) -> None:
    response = http.get("/tokenizer_info")
    assert response.status_code == 200, response.text
    info = response.json()
    backend = shared_model.backend
    assert backend.eos_token is not None
    assert info["eos_token"] == backend.token_text(backend.eos_token)
    assert info["chat_template"] == backend.metadata["tokenizer.chat_template"]
    assert info["model_max_length"] == SERVER_CTX
    assert http.get("/tokenizer_info", params={"model": MODEL}).json() == info
    # lm-eval's eos_token_id: the first id of its text, tokenized without special tokens.
    eos = _tokenize(http, prompt=info["eos_token"], add_special_tokens=False)["tokens"]
    assert eos == [backend.eos_token]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"prompt": "a", "messages": HI},
        {"prompt": 3},
        {"messages": []},
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
            ]
        },
    ],
)
def test_bad_tokenize_bodies_get_400(http: httpx.Client, body: dict) -> None:
    assert_error_shape(http.post("/tokenize", json=body), 400)


@pytest.mark.parametrize(
    "body", [{"tokens": [-1]}, {"tokens": [10**9]}, {"tokens": "abc"}, {"tokens": [1.5]}, {}]
)
def test_bad_detokenize_bodies_get_400(http: httpx.Client, body: dict) -> None:
    assert_error_shape(http.post("/detokenize", json=body), 400)


def test_an_unknown_model_is_404(http: httpx.Client) -> None:
    assert_error_shape(http.post("/tokenize", json={"model": "no-such", "prompt": "a"}), 404)
    assert_error_shape(http.get("/tokenizer_info", params={"model": "no-such"}), 404)


def test_a_fresh_server_answers_for_its_one_text_model_beside_speech_models(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """lm-eval's first call names no model, before any is loaded; the speech models every
    home registers (Whisper, a Piper voice) have no tokenizer to mean."""
    from tests.support.owl_server import running_server

    with running_server(tmp_path_factory.mktemp("fresh")) as fresh:
        stored = httpx.get(f"{fresh.base}/v1/models", timeout=60).json()["data"]
        assert len(stored) > 1, stored  # more than the one text model
        info = httpx.get(f"{fresh.base}/tokenizer_info", timeout=120)
    assert info.status_code == 200, info.text
    assert info.json()["eos_token"] == "<|im_end|>"
