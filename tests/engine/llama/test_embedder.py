"""owl/engine/llama/embedder.py: llama.cpp's pooled embeddings against transformers' own.

A tiny random-weight sentence-transformers folder (a RoBERTa encoder with SmolLM2's BPE
tokenizer, which llama.cpp's converter recognises, and a mean-pooling 1_Pooling module) goes
through `owl convert` to a GGUF that says it is an embedding model (bert, pooling mean);
its vectors must be transformers' mean-pooled last hidden states for the same token ids.
The bundled SmolLM2, a causal LM, is mean-pooled.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from owl.config import Settings
from owl.engine.llama.embedder import Embedder
from owl.engine.llama.pooling import is_embedding_model, pooling_type
from owl.engine.loading import load_embedder
from owl.errors import ContextOverflow, InvalidPrompt
from owl.formats import inspect
from owl.pull import open_store, pull
from owl.quantize.convert import convert
from owl.store import Store
from tests.quantize.test_convert import shared_tools

pytestmark = pytest.mark.slow

HIDDEN = 64
POSITIONS = 131  # RoBERTa's first pad_token_id + 1 rows are not positions: 128 remain
CONTEXT = 128
PAD = 2  # SmolLM2's <|im_end|>; no input has it: RoBERTa numbers positions around it
IDS = [[1, 504, 3287, 314, 253, 11053, 30], [1, 7187, 4321], [1, 3012, 4426, 355, 601]]


def _tiny_sentence_transformer(folder: Path, bundled: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, RobertaConfig, RobertaModel

    tokenizer = AutoTokenizer.from_pretrained(str(bundled.parent), gguf_file=bundled.name)
    config = RobertaConfig(
        vocab_size=len(tokenizer),
        hidden_size=HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=POSITIONS,
        pad_token_id=PAD,
        bos_token_id=1,
        eos_token_id=PAD,
        type_vocab_size=1,
    )
    torch.manual_seed(0)
    model = RobertaModel(config, add_pooling_layer=False).eval()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# tiny random encoder\n")
    # sentence-transformers' layout: the converter reads the pooling from here.
    (folder / "modules.json").write_text(
        json.dumps([{"idx": 1, "name": "1", "path": "1_Pooling", "type": "Pooling"}])
    )
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": HIDDEN, "pooling_mode_mean_tokens": True})
    )
    return folder


def _reference(folder: Path, ids: list[list[int]]) -> np.ndarray:
    """transformers' mean of the last hidden states per input, L2-normalized."""
    import torch
    from transformers import RobertaModel

    model = RobertaModel.from_pretrained(str(folder), add_pooling_layer=False).eval()
    rows = []
    with torch.no_grad():
        for tokens in ids:
            hidden = model(torch.tensor([tokens])).last_hidden_state[0].double().numpy()
            mean = hidden.mean(axis=0)
            rows.append(mean / np.linalg.norm(mean))
    return np.array(rows)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path):  # noqa: ANN201
    work = tmp_path_factory.mktemp("embed")
    folder = _tiny_sentence_transformer(work / "tiny-st", bundled_gguf)
    settings = Settings(home=work / "home", ctx=0)
    store = open_store(settings)
    tools = shared_tools(tmp_path_factory.getbasetemp())
    manifest = convert(folder, store=store, settings=settings, outtype="f32", tools=tools)
    return folder, settings, store, manifest


def test_the_converted_encoder_is_an_embedding_model(encoder) -> None:  # noqa: ANN001
    _, _, store, manifest = encoder
    metadata = inspect(store.weights_path(manifest)).metadata
    assert metadata["general.architecture"] == "bert"
    assert pooling_type(metadata) == "mean" and is_embedding_model(metadata)


def test_llama_cpp_embeddings_are_transformers_mean_pooling(encoder) -> None:  # noqa: ANN001
    folder, settings, store, manifest = encoder
    embedder = load_embedder(manifest, store=store, settings=settings)
    try:
        assert embedder.pooling == "mean" and embedder.dimensions == HIDDEN
        assert embedder.n_ctx == CONTEXT
        batch = embedder.embed_tokens(IDS)
        alone = [embedder.embed_tokens([tokens]).vectors[0] for tokens in IDS]
        with pytest.raises(ContextOverflow, match=str(CONTEXT)):
            embedder.embed_tokens([[5] * (CONTEXT + 1)])
        cut = embedder.embed_tokens([[5] * (CONTEXT + 1)], truncate=True)
        assert cut.token_counts == [CONTEXT] and len(cut.vectors[0]) == HIDDEN
    finally:
        embedder.close()
    expected = _reference(folder, IDS)
    np.testing.assert_allclose(np.array(batch.vectors), expected, atol=1e-4)
    np.testing.assert_allclose(np.array(alone), np.array(batch.vectors), atol=1e-5)
    assert batch.token_counts == [len(tokens) for tokens in IDS]


def test_smollm2_is_mean_pooled_and_not_an_embedding_model(bundled_gguf: Path) -> None:
    assert not is_embedding_model(inspect(bundled_gguf).metadata)
    embedder = Embedder(bundled_gguf, n_ctx=64, threads=1)
    try:
        assert embedder.pooling == "mean" and embedder.dimensions == 576
        texts = ["one", "two words", "a somewhat longer third input", "one"]
        result = embedder.embed(texts)
        raw = embedder.embed(texts[:1], normalize=False).vectors[0]
        with pytest.raises(InvalidPrompt, match="empty"):
            embedder.embed(["fine", ""])
        with pytest.raises(InvalidPrompt, match="vocabulary"):
            embedder.embed_tokens([[10**7]])
        # More inputs than one decode takes (64 sequences): grouped, in order.
        many = embedder.embed([f"text number {i}" for i in range(70)])
        first = embedder.embed(["text number 0", "text number 69"])
    finally:
        embedder.close()
    vectors = np.array(result.vectors)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[3], atol=1e-6)
    np.testing.assert_allclose(np.asarray(raw) / np.linalg.norm(raw), vectors[0], atol=1e-6)
    assert result.token_counts[0] < result.token_counts[2]
    np.testing.assert_allclose(many.vectors[0], first.vectors[0], atol=1e-5)
    np.testing.assert_allclose(many.vectors[69], first.vectors[1], atol=1e-5)


def test_the_stored_folder_embeds_with_transformers_as_its_gguf_does(
    encoder,  # noqa: ANN001
    settings: Settings,
    store: Store,
) -> None:
    # Not a GGUF, so transformers embeds it (owl/engine/transformers/text_embedder.py), with
    # the pooling its stored 1_Pooling/config.json names and the context its positions allow.
    folder = encoder[0]
    manifest = pull(str(folder), store=store, settings=settings)
    embedder = load_embedder(manifest, store=store, settings=settings)
    try:
        assert not isinstance(embedder, Embedder) and embedder.n_ctx == CONTEXT
        vectors = np.array(embedder.embed_tokens(IDS).vectors)  # type: ignore[attr-defined]
    finally:
        embedder.close()
    np.testing.assert_allclose(vectors, _reference(folder, IDS), atol=1e-4)
