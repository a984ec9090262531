"""A tiny random-weight wav2vec 2.0 CTC folder, laid out as facebook/wav2vec2-base-960h is
(config.json naming Wav2Vec2ForCTC, model.safetensors, vocab.json with its letters and the
"|" word delimiter, tokenizer_config.json, preprocessor_config.json), and transformers' own
transcript of some audio with it, for owl's CTC transcriber to be compared against.

The convolutions keep wav2vec 2.0's strides (320 samples, 20 ms a frame) so that word times
mean what they mean for the real model; everything else is as small as it goes. Weights come
from `torch.manual_seed(0)` and the architecture's own initialisation.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# wav2vec2-base-960h's vocabulary: CTC's blank (<pad>), specials, the word delimiter, letters.
VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ETAONIHSRDLUMWCFGYPBVK'XJQZ"]
SAMPLE_RATE = 16_000


def build_tiny_wav2vec2(dest: Path) -> Path:
    """The folder `dest`, holding a tiny Wav2Vec2ForCTC and its tokenizer and extractor."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
    )

    dest.mkdir(parents=True, exist_ok=True)
    vocab = dest / "vocab.json"
    vocab.write_text(json.dumps({token: i for i, token in enumerate(VOCAB)}), encoding="utf-8")
    Wav2Vec2CTCTokenizer(
        str(vocab), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|"
    ).save_pretrained(dest)
    Wav2Vec2FeatureExtractor(
        feature_size=1,
        sampling_rate=SAMPLE_RATE,
        padding_value=0.0,
        do_normalize=True,
        return_attention_mask=False,
    ).save_pretrained(dest)
    config = Wav2Vec2Config(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16,) * 7,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        feat_extract_norm="group",
        do_stable_layer_norm=False,
    )
    torch.manual_seed(0)
    Wav2Vec2ForCTC(config).eval().save_pretrained(dest, safe_serialization=True)
    (dest / "README.md").write_text(
        "---\nlicense: apache-2.0\n---\n# A tiny random-weight wav2vec 2.0 for owl's tests\n",
        encoding="utf-8",
    )
    return dest


def reference_transcript(folder: Path, samples: np.ndarray) -> str:
    """transformers' own greedy CTC transcript of `samples` (16 kHz float32): the extractor,
    the model's logits, their argmax, the tokenizer's decode — its documented recipe."""
    import torch
    from transformers import AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer

    extractor = AutoFeatureExtractor.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCTC.from_pretrained(folder).eval()
    values = extractor(samples, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_values
    with torch.inference_mode():
        ids = model(values).logits.argmax(dim=-1)
    return tokenizer.batch_decode(ids)[0]
