"""Text embeddings with transformers: a sentence-transformers folder (modules.json,
1_Pooling/config.json, sentence_bert_config.json; the built-in `minilm`) or a bare encoder
folder (BertModel, RobertaModel, …), which is mean-pooled as sentence-transformers pools one.

The vectors are sentence-transformers' own for the same texts: the encoder's last hidden
states pooled as the Pooling module says (several modes are concatenated), L2-normalised
when modules.json has a Normalize module or when asked; tests/engine/transformers/
test_text_embedder.py compares them with sentence-transformers'. A call's inputs are sorted
by length, padded in batches under the attention mask (which keeps a padded input's vector
its own, up to float noise) and put back in order. One call runs at a time (engine/turns.py);
torch is imported when an embedder is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from owl.engine.backend import Capability, Occupancy
from owl.engine.embeddings import Embeddings, checked_input
from owl.engine.transformers.pretrained import load_pretrained
from owl.engine.turns import Turns
from owl.errors import EngineError, NotEmbeddable
from owl.formats.hf_folder import list_folder, model_class_of, read_folder_config
from owl.formats.sentence_folder import SentenceLayout, module_files, read_layout

# Encoder classes (matched by the end of the class name, as hf_capabilities.toml matches)
# that embed without a sentence-transformers layout: mean-pooled, as sentence-transformers
# pools a plain encoder. BertModel also covers DistilBertModel and ModernBertModel,
# RobertaModel XLMRobertaModel.
ENCODERS = (
    "BertModel", "RobertaModel", "MPNetModel", "ElectraModel", "DebertaV2Model", "CamembertModel",
)  # fmt: skip
POOLING = ("cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
MODULES_RUN = ("Transformer", "Pooling", "Normalize")
# Model types that number positions after the padding index (RoBERTa's create_position_ids…):
# pad_token_id + 1 rows of their position table are no position.
PADDING_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "data2vec-text")
MAX_BATCH = 32  # inputs in one forward pass
BATCH_TOKENS = 8192  # padded tokens in one forward pass (one input may be longer alone)
FLOAT32 = 4


class TextEmbedder:
    """A sentence-transformers (or bare encoder) Hugging Face folder that turns texts into
    vectors. `dimensions` is the size of every vector it makes, `n_ctx` the longest input."""

    capabilities = frozenset({Capability.EMBED})

    def __init__(self, folder: Path, *, name: str = "", threads: int | None = None) -> None:
        self.name = name or folder.name
        layout = _checked_layout(folder, self.name)
        torch, self._model, self._tokenizer = load_pretrained(
            folder, auto_class="AutoModel", name=self.name, threads=threads
        )
        self._torch = torch
        config = self._model.config
        self.pooling = layout.pooling if layout and layout.pooling else ("mean",)
        self.normalizes = bool(layout and layout.normalize)
        if layout and layout.lowercase:
            _lowercase_first(self._tokenizer)
        self.n_ctx = _context(config, self._tokenizer, layout)
        # Lengths are checked (and cut) by owl against n_ctx, so the tokenizer's own limit
        # would only warn about texts that owl refuses or cuts anyway.
        self._tokenizer.model_max_length = 1 << 30
        self.dimensions = int(config.hidden_size) * len(self.pooling)
        self._vocab = int(self._model.get_input_embeddings().num_embeddings)
        pad = self._tokenizer.pad_token_id
        self._pad = int(pad if pad is not None else getattr(config, "pad_token_id", 0) or 0)
        self.memory_bytes = _memory(self._model, config, self.n_ctx)
        self._turns = Turns()

    def occupancy(self) -> Occupancy:
        return self._turns.occupancy()

    def tokenize(self, text: str) -> list[int]:
        """The text's tokens with the special ones the model adds (BERT's [CLS] … [SEP])."""
        return self._tokenize([text])[0]

    def embed(
        self, texts: Sequence[str], *, normalize: bool = True, truncate: bool = False
    ) -> Embeddings:
        """One vector per text, L2-normalised unless told not to (or the model's Normalize
        module does it). A text longer than n_ctx raises ContextOverflow, or with `truncate`
        is cut as sentence-transformers cuts it (its last special token kept); an empty one
        raises InvalidPrompt."""
        rows = self._tokenize(list(texts))
        if truncate:
            for index, ids in enumerate(rows):
                if len(ids) > self.n_ctx:
                    cut = self._tokenizer(texts[index], truncation=True, max_length=self.n_ctx)
                    rows[index] = list(cut["input_ids"])
        return self.embed_tokens(rows, normalize=normalize, truncate=truncate)

    def embed_tokens(
        self, tokens: Sequence[Sequence[int]], *, normalize: bool = True, truncate: bool = False
    ) -> Embeddings:
        """embed() for inputs already tokenized (OpenAI accepts token ids); `truncate` keeps
        an overlong input's first n_ctx tokens, as the other embedders do."""
        rows = [
            checked_input(
                list(ids), index, vocab=self._vocab, n_ctx=self.n_ctx, truncate=truncate,
                name=self.name,
            )
            for index, ids in enumerate(tokens)
        ]  # fmt: skip
        with self._turns.turn():
            vectors = self._vectors(rows)
        if normalize or self.normalizes:
            vectors = [_normalized(vector) for vector in vectors]
        return Embeddings([vector.tolist() for vector in vectors], [len(ids) for ids in rows])

    def close(self, *, cancel: bool = False) -> None:
        """Free the weights (after a call under way; an embed call is short, so `cancel`
        has nothing to cut short)."""
        with self._turns.run:
            self._model = None

    def _tokenize(self, texts: list[str]) -> list[list[int]]:
        # An empty text has no tokens (the check refuses it), not BERT's bare [CLS] [SEP].
        present = [text for text in texts if text]
        encoded = iter(self._tokenizer(present)["input_ids"] if present else [])
        return [list(next(encoded)) if text else [] for text in texts]

    def _vectors(self, rows: list[list[int]]) -> list[np.ndarray]:
        torch = self._torch
        model = self._live()
        vectors: list[np.ndarray] = [np.empty(0)] * len(rows)
        with torch.inference_mode():
            for group in _groups(rows, max(BATCH_TOKENS, self.n_ctx)):
                width = len(rows[group[0]])  # the longest: groups are sorted by length
                ids = torch.full((len(group), width), self._pad, dtype=torch.long)
                mask = torch.zeros((len(group), width), dtype=torch.long)
                for row, index in enumerate(group):
                    ids[row, : len(rows[index])] = torch.tensor(rows[index], dtype=torch.long)
                    mask[row, : len(rows[index])] = 1
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
                pooled = pool(torch, hidden.float(), mask, self.pooling).numpy()
                for row, index in enumerate(group):
                    vectors[index] = pooled[row]
        return vectors

    def _live(self) -> Any:
        if self._model is None:
            raise EngineError(f"'{self.name}' was unloaded; load it again")
        return self._model


def pool(torch: Any, hidden: Any, mask: Any, modes: Sequence[str]) -> Any:
    """Token vectors (batch, tokens, width) → one vector per input, as sentence-transformers'
    Pooling does for right-padded inputs: each mode's vector, concatenated in `modes` order."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    counts = torch.clamp(weights.sum(dim=1), min=1e-9)
    out = []
    for mode in modes:
        if mode == "cls":
            out.append(hidden[:, 0])
        elif mode == "max":
            out.append(hidden.masked_fill(weights == 0, float("-inf")).max(dim=1).values)
        elif mode == "mean":
            out.append((hidden * weights).sum(dim=1) / counts)
        elif mode == "mean_sqrt_len_tokens":
            out.append((hidden * weights).sum(dim=1) / torch.sqrt(counts))
        elif mode == "weightedmean":
            positions = torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype).view(1, -1, 1)
            weighted = weights * positions
            total = torch.clamp(weighted.sum(dim=1), min=1e-9)
            out.append((hidden * weighted).sum(dim=1) / total)
        elif mode == "lasttoken":
            last = (mask.sum(dim=1) - 1).clamp(min=0)
            out.append(hidden[torch.arange(hidden.shape[0]), last])
        else:  # _checked_layout refused it already
            raise NotEmbeddable(f"unknown pooling mode {mode!r}")
    return torch.cat(out, dim=-1)


def _groups(rows: list[list[int]], tokens: int) -> list[list[int]]:
    """Input indices, longest first, in groups of at most MAX_BATCH whose padded size
    (count × longest) is at most `tokens`."""
    order = sorted(range(len(rows)), key=lambda index: len(rows[index]), reverse=True)
    groups: list[list[int]] = []
    for index in order:
        group = groups[-1] if groups else None
        # The group's first input is its longest: adding one more pads it to that width.
        if group and len(group) < MAX_BATCH and (len(group) + 1) * len(rows[group[0]]) <= tokens:
            group.append(index)
        else:
            groups.append([index])
    return groups


def _checked_layout(folder: Path, name: str) -> SentenceLayout | None:
    """The folder's sentence-transformers layout, if owl can embed with the folder; else
    NotEmbeddable saying what to do."""
    files = {**list_folder(folder), **module_files(folder)}
    layout = read_layout(files)
    model_class = model_class_of(read_folder_config(folder))
    if layout is None or layout.pooling is None:
        if not (model_class and model_class.endswith(ENCODERS)):
            raise NotEmbeddable(
                f"'{name}' is no text embedding model: it has no sentence-transformers pooling "
                f"(modules.json with a Pooling module) and its config.json names "
                f"{model_class or 'no model class'}, not an encoder ({', '.join(ENCODERS)}). "
                "Embed text with a sentence-transformers folder (the built-in `minilm`) or a "
                f"GGUF embedding model: convert it first (`owl convert {name}`) to embed it "
                "with llama.cpp; images embed with CLIP, SigLIP or DINOv2 folders"
            )
    if layout is None:
        return None
    others = [kind for kind in layout.kinds if kind not in MODULES_RUN]
    if others:
        raise NotEmbeddable(
            f"'{name}' has the sentence-transformers module {others[0]}, which owl does not "
            f"run (it runs {', '.join(MODULES_RUN)}); embed with sentence-transformers itself, "
            "or choose a model without it"
        )
    unknown = [mode for mode in layout.pooling or () if mode not in POOLING]
    if unknown:
        raise NotEmbeddable(
            f"'{name}' pools with {unknown[0]!r}, which owl does not know; owl pools with "
            f"{', '.join(POOLING)}"
        )
    return layout


def _context(config: Any, tokenizer: Any, layout: SentenceLayout | None) -> int:
    """The longest input: the folder's max_seq_length, else the tokenizer's limit, at most
    the positions the model has."""
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and positions > 0 and config.model_type in PADDING_POSITIONS:
        positions -= int(config.pad_token_id or 0) + 1
    limit = getattr(tokenizer, "model_max_length", None)
    wanted = layout.max_seq_length if layout and layout.max_seq_length else None
    if wanted is None and isinstance(limit, int) and 0 < limit < 1 << 20:
        wanted = limit
    if isinstance(positions, int) and positions > 0:
        return min(wanted or positions, positions)
    if wanted is None:
        raise NotEmbeddable(
            "the model says neither its longest input (max_seq_length in "
            "sentence_bert_config.json) nor its positions (max_position_embeddings); add one"
        )
    return wanted


def _memory(model: Any, config: Any, n_ctx: int) -> int:
    """The weights as loaded, and one full batch's activations in one layer at a time: the
    hidden states and their projections, the feed-forward and the attention scores."""
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    hidden = int(getattr(config, "hidden_size", 0) or 0)
    inner = int(getattr(config, "intermediate_size", 0) or 4 * hidden)
    heads = int(getattr(config, "num_attention_heads", 0) or 1)
    tokens = max(BATCH_TOKENS, n_ctx)
    return weights + FLOAT32 * tokens * (4 * hidden + inner + heads * n_ctx)


def _lowercase_first(tokenizer: Any) -> None:
    """sentence_bert_config's do_lower_case, as sentence-transformers applies it: a Lowercase
    normalizer before the tokenizer's own."""
    from tokenizers import normalizers

    backend = tokenizer.backend_tokenizer
    steps = [normalizers.Lowercase(), *([backend.normalizer] if backend.normalizer else [])]
    backend.normalizer = normalizers.Sequence(steps)


def _normalized(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector.astype(np.float64)))
    return vector / norm if norm > 0 else vector
