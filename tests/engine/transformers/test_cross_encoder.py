"""owl's cross-encoder on a tiny random-weight BertForSequenceClassification folder: the
scores sentence-transformers' CrossEncoder gives for the same pairs, batched or one by one,
long documents cut as it cuts them; the folder's own activation; refusals of bad input and of
models that are no rerankers; capabilities_of and engine.load for RERANK; and a real
`owl serve` answering /v1/rerank with it, beside a chat model's query likelihood."""

from __future__ import annotations

import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from owl import engine
from owl.config import Settings
from owl.engine import Capability
from owl.engine.ranking import MAX_DOCUMENTS
from owl.engine.registry import capabilities_of
from owl.engine.transformers.cross_encoder import CrossEncoder
from owl.errors import EngineError, InvalidPrompt, WrongModelKind
from owl.pull import open_store, pull
from owl.store import Store
from tests.support.owl_server import Server, running_server
from tests.support.tiny_cross_encoder import (
    POSITIONS,
    build_tiny_cross_encoder,
    reference_scores,
)
from tests.support.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.slow  # every test builds a folder with transformers, most load it

# The same float32 model on the same tokens: sentence-transformers and owl differ only in
# how pairs are padded into batches (the blocking of the matmuls), a few float32 ulps of
# a logit, and a sigmoid's slope is at most 1/4.
TOLERANCE = 1e-5
QUERY = "what do owls eat at night?"
DOCUMENTS = [
    "Owls hunt small mammals, insects and other birds, mostly at night.",
    "The stock market fell sharply on Tuesday.",
    "owls",
    "",
    "naïve café, déjà vu — ÉCOLE 東京 🦉",
    " ".join(f"word{i} about owls and mice in the barn" for i in range(40)),  # past 64 tokens
    "Barn owls swallow their prey whole and cough up pellets.",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-cross-encoder")


@pytest.fixture(scope="module")
def reranker(folder: Path) -> Iterator[CrossEncoder]:
    loaded = CrossEncoder(folder, threads=1)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def reference(folder: Path) -> list[float]:
    return reference_scores(folder, QUERY, DOCUMENTS)


def test_scores_are_sentence_transformers_own(
    reranker: CrossEncoder, reference: list[float]
) -> None:
    scores = reranker.rerank(QUERY, DOCUMENTS)
    assert max(abs(a - b) for a, b in zip(scores, reference, strict=True)) <= TOLERANCE
    assert all(0 < score < 1 for score in scores)  # the sigmoid of one logit
    assert max(scores) - min(scores) > 0.1  # the pairs are told apart, not all alike
    assert reranker.activation == "Sigmoid" and reranker.n_ctx == POSITIONS


def test_a_batch_scores_as_each_pair_alone(reranker: CrossEncoder) -> None:
    batched = reranker.rerank(QUERY, DOCUMENTS)
    alone = [reranker.rerank(QUERY, [document])[0] for document in DOCUMENTS]
    assert max(abs(a - b) for a, b in zip(batched, alone, strict=True)) <= TOLERANCE


def test_calls_from_several_threads_give_the_same_scores(reranker: CrossEncoder) -> None:
    expected = reranker.rerank(QUERY, DOCUMENTS)
    with ThreadPoolExecutor(max_workers=4) as pool:
        calls = [pool.submit(reranker.rerank, QUERY, DOCUMENTS) for _ in range(8)]
        counts = [pool.submit(reranker.tokenize, DOCUMENTS[0]) for _ in range(8)]
        results = [call.result() for call in calls]
    assert all(result == expected for result in results)
    assert len({tuple(count.result()) for count in counts}) == 1
    assert reranker.occupancy().busy == 0


def test_a_long_document_is_judged_by_its_start(reranker: CrossEncoder) -> None:
    long = DOCUMENTS[5]
    assert len(reranker.tokenize(long)) > POSITIONS
    longer = long + " and then something else entirely about the stock market"
    assert reranker.rerank(QUERY, [longer]) == reranker.rerank(QUERY, [long])


def test_more_documents_than_a_batch_keep_their_order(reranker: CrossEncoder, folder: Path) -> None:
    documents = [f"owl number {i} " * (i % 9 + 1) for i in range(70)]  # three batches
    expected = reference_scores(folder, QUERY, documents)
    scores = reranker.rerank(QUERY, documents)
    assert max(abs(a - b) for a, b in zip(scores, expected, strict=True)) <= TOLERANCE


@pytest.mark.parametrize(
    ("query", "documents", "message"),
    [
        ("  ", ["a"], "'query' is empty"),
        ("q", [], "'documents' is empty"),
        ("q", ["a"] * (MAX_DOCUMENTS + 1), f"rank at most {MAX_DOCUMENTS}"),
        ("owl " * POSITIONS, ["a"], "too long to rank documents"),
    ],
)
def test_bad_input_is_refused_with_what_to_do(
    reranker: CrossEncoder, query: str, documents: list[str], message: str
) -> None:
    with pytest.raises(InvalidPrompt, match=message):
        reranker.rerank(query, documents)


def test_the_folder_names_its_activation(reranker: CrossEncoder, tmp_path: Path) -> None:
    identity = "torch.nn.modules.linear.Identity"
    folder = build_tiny_cross_encoder(
        tmp_path / "identity", config={"sentence_transformers": {"activation_fn": identity}}
    )
    loaded = CrossEncoder(folder, threads=1)
    try:
        assert loaded.activation == "Identity"
        scores = loaded.rerank(QUERY, DOCUMENTS[:3])
        expected = reference_scores(folder, QUERY, DOCUMENTS[:3])
        assert max(abs(a - b) for a, b in zip(scores, expected, strict=True)) <= TOLERANCE
        # The same seed's weights: the raw logits, whose sigmoids are the default's scores.
        sigmoids = [1 / (1 + math.exp(-logit)) for logit in scores]
        default = reranker.rerank(QUERY, DOCUMENTS[:3])
        assert max(abs(a - b) for a, b in zip(sigmoids, default, strict=True)) <= TOLERANCE
        assert any(not 0 < score < 1 for score in scores)
    finally:
        loaded.close()
    odd = build_tiny_cross_encoder(
        tmp_path / "odd", config={"sentence_transformers": {"activation_fn": "torch.nn.GELU"}}
    )
    with pytest.raises(WrongModelKind, match="torch.nn.GELU"):
        CrossEncoder(odd)


def test_folders_that_are_no_rerankers_are_refused(tmp_path: Path) -> None:
    classifier = build_tiny_cross_encoder(tmp_path / "classifier", labels=2)
    with pytest.raises(WrongModelKind, match="classifier with 2 labels"):
        CrossEncoder(classifier)
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"architectures": ["BertModel"]}')
    with pytest.raises(WrongModelKind, match="names BertModel"):
        CrossEncoder(other)


def test_unloaded_it_says_so(folder: Path) -> None:
    loaded = CrossEncoder(folder, threads=1)
    loaded.close()
    with pytest.raises(EngineError, match="was unloaded"):
        loaded.rerank(QUERY, ["a"])


def test_a_stored_cross_encoder_reranks_and_a_classifier_does_nothing(
    folder: Path, store: Store, settings: Settings, tmp_path: Path
) -> None:
    manifest = pull(str(folder), store=store, settings=settings, name="tiny-rerank")
    assert capabilities_of(manifest, store=store) == {Capability.RERANK}
    loaded = engine.load(manifest, store=store, settings=settings, capability=Capability.RERANK)
    try:
        assert isinstance(loaded, CrossEncoder) and loaded.capabilities == {Capability.RERANK}
        assert loaded.occupancy().busy == 0 and loaded.memory_bytes > 0
    finally:
        loaded.close()
    classifier = build_tiny_cross_encoder(tmp_path / "classifier", labels=2)
    stored = pull(str(classifier), store=store, settings=settings, name="tiny-classifier")
    assert capabilities_of(stored, store=store) == frozenset()
    with pytest.raises(WrongModelKind, match="classifier with 2 labels"):
        engine.load(stored, store=store, settings=settings, capability=Capability.RERANK)
    gguf = pull(str(write_tiny_gguf(tmp_path / "tiny.gguf")), store=store, settings=settings)
    with pytest.raises(WrongModelKind, match="not a cross-encoder"):
        engine.load(gguf, store=store, settings=settings, capability=Capability.RERANK)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve-rerank")
    settings = Settings(home=root / "owl-home")
    store = open_store(settings)
    pull(str(folder), store=store, settings=settings, name="tiny-rerank")
    pull("smollm2", store=store, settings=settings)
    with running_server(root) as running:
        yield running


def _rerank(server: Server, model: str, documents: list[str], **extra: object) -> dict:
    response = httpx.post(
        f"{server.base}/v1/rerank",
        timeout=120,
        json={"model": model, "query": QUERY, "documents": documents, **extra},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_server_reranks_with_the_cross_encoder(server: Server, reference: list[float]) -> None:
    body = _rerank(server, "tiny-rerank", DOCUMENTS, top_n=3, return_documents=True)
    expected = sorted(range(len(DOCUMENTS)), key=lambda i: reference[i], reverse=True)[:3]
    assert [result["index"] for result in body["results"]] == expected
    for result in body["results"]:
        assert abs(result["relevance_score"] - reference[result["index"]]) <= TOLERANCE
        assert result["document"]["text"] == DOCUMENTS[result["index"]]
    assert body["model"] == "tiny-rerank" and body["usage"]["total_tokens"] > len(DOCUMENTS)
    # The same server still ranks by a chat model's query likelihood.
    chat = _rerank(server, "smollm2", DOCUMENTS[:3])
    assert chat["model"] == "smollm2" and len(chat["results"]) == 3
    assert all(0 < result["relevance_score"] <= 1 for result in chat["results"])
    refused = httpx.post(
        f"{server.base}/v1/rerank",
        json={"model": "tiny-rerank", "query": "owl " * POSITIONS, "documents": ["a"]},
    )
    assert refused.status_code == 400 and "too long" in refused.text
