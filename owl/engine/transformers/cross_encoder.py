"""Reranking with a cross-encoder: a Hugging Face *ForSequenceClassification folder with one
label (cross-encoder/ms-marco-MiniLM-L-6-v2, BAAI/bge-reranker-base: BERT, RoBERTa, XLM-R,
ELECTRA, …) that reads a query and a document together and gives one relevance logit.

The scores are sentence-transformers' CrossEncoder.predict's for the same pairs (6.2.0,
compared in tests/engine/transformers/test_cross_encoder.py): the pair tokenized as the
model's tokenizer joins two texts ([CLS] query [SEP] document [SEP] for BERT), the logit put
through the activation sentence-transformers picks — the one the folder names
(config_sentence_transformers.json's or config.json's `activation_fn`, a torch.nn Sigmoid,
Identity or Tanh), else Sigmoid, its default for one label — so scores are in (0, 1) unless
the folder says otherwise. One difference: a pair longer than the window loses the end of
its document only (the query is kept whole), where sentence-transformers cuts the longer of
the two; for a query up to half the window, the common case, they cut the same tokens.

Pairs are sorted by length, padded in batches under the attention mask and put back in
order. One call runs at a time (engine/turns.py); torch is imported when one is made.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from owl.engine.backend import Capability, Occupancy
from owl.engine.ranking import check_rerank
from owl.engine.transformers.pretrained import load_pretrained
from owl.engine.turns import Turns
from owl.errors import EngineError, InvalidPrompt, WrongModelKind
from owl.formats.hf_folder import model_class_of, read_folder_config, read_json

CLASS_SUFFIX = "ForSequenceClassification"
MIN_DOCUMENT_TOKENS = 16  # a query that leaves less room than this for a document is refused
MAX_BATCH = 32  # pairs in one forward pass, as sentence-transformers' default batch_size
# Activations sentence-transformers may name (a torch.nn class); others are refused.
ACTIVATIONS = ("Sigmoid", "Identity", "Tanh")
# Model types that number positions after the padding index: pad_token_id + 1 rows of their
# position table are no position (as in owl/engine/transformers/text_embedder.py).
PADDING_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "data2vec-text")
FLOAT32 = 4


class CrossEncoder:
    """A cross-encoder Hugging Face folder that scores documents against a query.

    `threads`: torch's CPU threads (process-wide, as for the other transformers backends).
    `n_ctx` is the longest pair, in tokens; `activation` the function the logit goes through.
    """

    capabilities = frozenset({Capability.RERANK})

    def __init__(self, folder: Path, *, name: str = "", threads: int | None = None) -> None:
        self.name = name or folder.name
        config = read_folder_config(folder)
        _check_kind(config, self.name)
        self.activation = activation_of(config, folder, self.name)
        torch, self._model, self._tokenizer = load_pretrained(
            folder,
            auto_class="AutoModelForSequenceClassification",
            name=self.name,
            threads=threads,
        )
        if int(self._model.config.num_labels) != 1:  # what transformers made of the config
            raise _many_labels(self.name, int(self._model.config.num_labels))
        if self._tokenizer.pad_token_id is None:
            raise WrongModelKind(
                f"'{self.name}' has no padding token, which batching pairs needs; rerank with "
                "a cross-encoder whose tokenizer has one (BERT, RoBERTa, XLM-R, ELECTRA)"
            )
        self._torch = torch
        self.n_ctx = _context(self._model.config, self._tokenizer, folder)
        # owl cuts pairs to n_ctx itself; the tokenizer's own limit would only warn.
        self._tokenizer.model_max_length = 1 << 30
        self._specials = int(self._tokenizer.num_special_tokens_to_add(pair=True))
        self.memory_bytes = _memory(self._model, self.n_ctx)
        self._turns = Turns()
        # A fast tokenizer called with truncation settings changes its own state: calls from
        # two threads at once fail ("Already borrowed"), so they take turns.
        self._tokenizing = threading.Lock()

    def occupancy(self) -> Occupancy:
        return self._turns.occupancy()

    def tokenize(self, text: str) -> list[int]:
        """The text's own tokens, without the special ones a pair is framed with."""
        with self._tokenizing:
            return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def rerank(self, query: str, documents: Sequence[str]) -> list[float]:
        """One relevance score per document, in input order; higher is more relevant.

        InvalidPrompt for an empty query, no documents, more than MAX_DOCUMENTS, or a query
        too long to leave MIN_DOCUMENT_TOKENS of the window for a document; EngineError
        once the model is unloaded. A long document is judged by its start.
        """
        documents = list(documents)
        check_rerank(query, documents)
        asked = len(self.tokenize(query))
        if asked + self._specials + MIN_DOCUMENT_TOKENS > self.n_ctx:
            raise InvalidPrompt(
                f"the query is {asked} tokens, too long to rank documents with '{self.name}' "
                f"(window {self.n_ctx} tokens for query and document together); shorten it "
                f"to at most {self.n_ctx - self._specials - MIN_DOCUMENT_TOKENS} tokens"
            )
        with self._tokenizing:
            encoded = self._tokenizer(
                [query] * len(documents),
                documents,
                truncation="only_second",
                max_length=self.n_ctx,
            )
        rows = [
            {key: list(values[index]) for key, values in encoded.items()}
            for index in range(len(documents))
        ]
        with self._turns.turn():
            logits = self._logits(rows)
        return [_activated(self.activation, logit) for logit in logits]

    def close(self, *, cancel: bool = False) -> None:
        """Free the weights (after a call under way; a call is short, so `cancel` has
        nothing to cut short)."""
        with self._turns.run:
            self._model = None

    def _logits(self, rows: list[dict[str, list[int]]]) -> list[float]:
        model = self._model
        if model is None:
            raise EngineError(f"'{self.name}' was unloaded; load it again")
        order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]), reverse=True)
        logits = [0.0] * len(rows)
        with self._torch.inference_mode():
            for start in range(0, len(order), MAX_BATCH):
                group = order[start : start + MAX_BATCH]
                with self._tokenizing:
                    batch = self._tokenizer.pad([rows[i] for i in group], return_tensors="pt")
                out = model(**batch).logits.float().view(-1)
                for row, index in enumerate(group):
                    logits[index] = float(out[row])
        return logits


def label_count(config: Mapping[str, Any]) -> int:
    """The labels a sequence-classification config.json has, as transformers reads it:
    id2label's size, else num_labels, else transformers' default of 2."""
    labels = config.get("id2label")
    if isinstance(labels, Mapping) and labels:
        return len(labels)
    count = config.get("num_labels")
    return count if isinstance(count, int) and count > 0 else 2


def activation_of(config: Mapping[str, Any], folder: Path, name: str) -> str:
    """The activation sentence-transformers puts the logit through, by the name of its
    torch.nn class: the folder's own choice (config_sentence_transformers.json, then
    config.json's sentence_transformers section, then its older
    sbert_ce_default_activation_function), else Sigmoid, the default for one label."""
    named: Any = None
    extra = folder / "config_sentence_transformers.json"
    if extra.is_file():
        data = read_json(extra, name=extra.name)
        named = data.get("activation_fn") if isinstance(data, dict) else None
    section = config.get("sentence_transformers")
    if named is None and isinstance(section, Mapping):
        named = section.get("activation_fn")
    if named is None:
        named = config.get("sbert_ce_default_activation_function")
    # sentence-transformers runs only torch's own classes unless trusted with remote code.
    if not isinstance(named, str) or not named.startswith("torch."):
        return "Sigmoid"
    kind = named.rsplit(".", 1)[-1]
    if kind not in ACTIVATIONS:
        raise WrongModelKind(
            f"'{name}' puts its scores through {named}, which owl does not run (it runs "
            f"torch.nn {', '.join(ACTIVATIONS)}); rerank with sentence-transformers itself"
        )
    return kind


def _activated(kind: str, logit: float) -> float:
    if kind == "Identity":
        return logit
    if kind == "Tanh":
        return math.tanh(logit)
    # The logistic function without overflow for large negative logits.
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    small = math.exp(logit)
    return small / (1.0 + small)


def _check_kind(config: Mapping[str, Any], name: str) -> None:
    model_class = model_class_of(config) or ""
    if not model_class.endswith(CLASS_SUFFIX):
        raise WrongModelKind(
            f"'{name}' is no cross-encoder: its config.json names "
            f"{model_class or 'no model class'}, not a *{CLASS_SUFFIX} class. Rerank with a "
            "cross-encoder folder (owl pull hf:cross-encoder/ms-marco-MiniLM-L-6-v2) or by a "
            "chat model's query likelihood (POST /v1/rerank with a chat model)"
        )
    labels = label_count(config)
    if labels != 1:
        raise _many_labels(name, labels)


def _many_labels(name: str, labels: int) -> WrongModelKind:
    return WrongModelKind(
        f"'{name}' is a classifier with {labels} labels, not a reranker: a cross-encoder "
        "gives one relevance score (num_labels 1). Rerank with one such as "
        "hf:cross-encoder/ms-marco-MiniLM-L-6-v2 or hf:BAAI/bge-reranker-base"
    )


def _context(config: Any, tokenizer: Any, folder: Path) -> int:
    """The longest pair, as sentence-transformers takes it: sentence_bert_config.json's
    max_seq_length, else the tokenizer's limit, at most the positions the model has."""
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0 and config.model_type in PADDING_POSITIONS:
        positions -= int(config.pad_token_id or 0) + 1
    wanted = None
    sentence = folder / "sentence_bert_config.json"
    if sentence.is_file():
        data = read_json(sentence, name=sentence.name)
        wanted = data.get("max_seq_length") if isinstance(data, dict) else None
    limit = getattr(tokenizer, "model_max_length", None)
    if not (isinstance(wanted, int) and wanted > 0):
        wanted = limit if isinstance(limit, int) and 0 < limit < 1 << 20 else None
    if isinstance(positions, int) and positions > 0:
        return min(wanted or positions, positions)
    if wanted is None:
        raise WrongModelKind(
            "the cross-encoder says neither its longest input (the tokenizer's "
            "model_max_length) nor its positions (max_position_embeddings); add one"
        )
    return wanted


def _memory(model: Any, n_ctx: int) -> int:
    """The weights as loaded, and one full batch's activations in one layer at a time: the
    hidden states and their projections, the feed-forward and the attention scores."""
    config = model.config
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    inner = int(getattr(config, "intermediate_size", 0) or 4 * hidden)
    heads = int(getattr(config, "num_attention_heads", 0) or 1)
    tokens = MAX_BATCH * n_ctx
    return weights + FLOAT32 * tokens * (4 * hidden + inner + heads * n_ctx)
