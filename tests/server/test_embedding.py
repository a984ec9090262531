"""Embeddings end to end: the real `owl serve`, the official `openai` and `ollama` clients.

The server (tests/server/conftest.py, a 512-token context) serves the bundled SmolLM2, a
causal LM that owl mean-pools (owl/engine/llama/embedder.py): its vectors are not a trained
embedding model's, but they are the model's own and must behave like embeddings.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import ollama
import openai
import pytest

from tests.server.conftest import Server

pytestmark = pytest.mark.slow

MODEL = "smollm2"
DIMENSIONS = 576  # SmolLM2-135M's hidden size
TEXTS = [
    "The cat sits on the mat.",
    "A cat is sitting on a rug.",
    "Interest rates rose again this quarter.",
]
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def ollama_client(server: Server) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.base, timeout=120) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as raw:
        yield raw


def vectors(response: openai.types.CreateEmbeddingResponse) -> np.ndarray:
    return np.array([item.embedding for item in sorted(response.data, key=lambda d: d.index)])


def test_openai_float_and_base64_give_the_same_normalized_vectors(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format="float")
    # The client's default: it asks for base64 and decodes it with numpy.
    decoded = client.embeddings.create(model=MODEL, input=TEXTS)
    a, b = vectors(floats), vectors(decoded)
    assert a.shape == (len(TEXTS), DIMENSIONS)
    np.testing.assert_allclose(a, b, atol=1e-7)  # float32 both ways
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert floats.model == MODEL and floats.object == "list"
    assert [item.index for item in floats.data] == [0, 1, 2]
    # usage counts the inputs' tokens: more text, more tokens; the same for both calls.
    assert floats.usage.prompt_tokens == floats.usage.total_tokens == decoded.usage.total_tokens
    single = client.embeddings.create(model=MODEL, input=TEXTS[0])
    assert 0 < single.usage.prompt_tokens < floats.usage.prompt_tokens


def test_base64_is_little_endian_float32(http: httpx.Client) -> None:
    body = {"model": MODEL, "input": "hello", "encoding_format": "base64"}
    raw = http.post("/v1/embeddings", json=body).json()["data"][0]["embedding"]
    plain = http.post("/v1/embeddings", json={**body, "encoding_format": "float"}).json()
    decoded = np.frombuffer(base64.b64decode(raw), dtype="<f4")
    np.testing.assert_array_equal(decoded, np.asarray(plain["data"][0]["embedding"], "<f4"))


def test_batch_and_one_by_one_agree_and_repeat_exactly(client: openai.OpenAI) -> None:
    batch = vectors(client.embeddings.create(model=MODEL, input=[*TEXTS, TEXTS[0]]))
    alone = np.array([vectors(client.embeddings.create(model=MODEL, input=t))[0] for t in TEXTS])
    np.testing.assert_allclose(batch[:3], alone, atol=TOLERANCE)
    np.testing.assert_allclose(batch[3], batch[0], atol=TOLERANCE)  # the same text twice
    assert np.abs(batch[0] - batch[2]).max() > 0.01  # different texts differ


def test_paraphrases_are_closer_than_unrelated_texts(client: openai.OpenAI) -> None:
    cat, rug, rates = vectors(client.embeddings.create(model=MODEL, input=TEXTS))
    # Measured on SmolLM2 mean pooling: 0.96 for the paraphrase, 0.79 for the unrelated.
    assert float(cat @ rug) > float(cat @ rates) + 0.05


def test_token_ids_embed_as_their_text_does(client: openai.OpenAI, bundled_gguf: Path) -> None:
    import llama_cpp

    vocab = llama_cpp.Llama(str(bundled_gguf), vocab_only=True, verbose=False)
    ids = [vocab.tokenize(text.encode(), add_bos=True) for text in TEXTS[:2]]
    by_text = client.embeddings.create(model=MODEL, input=TEXTS[:2])
    by_ids = client.embeddings.create(model=MODEL, input=ids)
    np.testing.assert_allclose(vectors(by_ids), vectors(by_text), atol=TOLERANCE)
    assert by_ids.usage.prompt_tokens == by_text.usage.prompt_tokens == sum(map(len, ids))
    one = client.embeddings.create(model=MODEL, input=ids[0])  # one input as a list of ids
    np.testing.assert_allclose(vectors(one)[0], vectors(by_text)[0], atol=TOLERANCE)


def test_openai_errors(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="no-such-model", input="hi")
    for body, words in (
        ({"model": MODEL, "input": []}, "empty"),
        ({"model": MODEL, "input": [""]}, "empty"),
        ({"model": MODEL, "input": ["x"] * 2049}, "at most 2048"),
        ({"model": MODEL, "input": "hi", "dimensions": 8}, "576 dimensions"),
        ({"model": MODEL, "input": "word " * 600}, "more than the 512"),
        ({"model": MODEL, "input": [[10**9]]}, "vocabulary"),
        ({"model": MODEL, "input": "hi", "encoding_format": "hex"}, "encoding_format"),
    ):
        response = http.post("/v1/embeddings", json=body)
        assert response.status_code == 400, body
        assert words in response.json()["error"]["message"], response.json()


def test_ollama_embed_matches_openai(client: openai.OpenAI, ollama_client: ollama.Client) -> None:
    answer = ollama_client.embed(model=MODEL, input=TEXTS)
    ours = np.array(answer.embeddings)
    np.testing.assert_allclose(
        ours, vectors(client.embeddings.create(model=MODEL, input=TEXTS)), atol=TOLERANCE
    )
    assert answer.model == MODEL and answer.prompt_eval_count > len(TEXTS)
    assert answer.total_duration >= answer.load_duration >= 0
    one = ollama_client.embed(model=MODEL, input=TEXTS[0])
    np.testing.assert_allclose(one.embeddings[0], ours[0], atol=TOLERANCE)


def test_ollama_truncates_unless_told_not_to(ollama_client: ollama.Client) -> None:
    long = "word " * 600  # over the server's 512-token context
    answer = ollama_client.embed(model=MODEL, input=long)
    assert answer.prompt_eval_count == 512 and len(answer.embeddings[0]) == DIMENSIONS
    with pytest.raises(ollama.ResponseError) as refused:
        ollama_client.embed(model=MODEL, input=long, truncate=False)
    assert refused.value.status_code == 400 and "512" in refused.value.error


def test_ollama_legacy_embeddings_are_not_normalized(ollama_client: ollama.Client) -> None:
    legacy = np.array(ollama_client.embeddings(model=MODEL, prompt=TEXTS[0]).embedding)
    normalized = np.array(ollama_client.embed(model=MODEL, input=TEXTS[0]).embeddings[0])
    assert abs(np.linalg.norm(legacy) - 1) > 0.1
    np.testing.assert_allclose(legacy / np.linalg.norm(legacy), normalized, atol=TOLERANCE)


def test_ollama_empty_input_loads_and_unknown_model_is_404(
    ollama_client: ollama.Client,
) -> None:
    assert ollama_client.embed(model=MODEL, input=[]).embeddings == []
    assert ollama_client.embeddings(model=MODEL, prompt="").embedding == []
    with pytest.raises(ollama.ResponseError) as missing:
        ollama_client.embed(model="no-such-model", input="hi")
    assert missing.value.status_code == 404
