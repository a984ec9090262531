"""Tiny random-weight transformers models, one per architecture family, for coverage tests.

Every model has 2 layers, hidden size 64, 4 attention heads (2 key/value heads where the
architecture has grouped-query attention), an MLP of 128 and 256 positions. Most carry
SmolLM2's vocabulary (49152) and tokenizer: llama.cpp's converter recognises a BPE tokenizer
by a hash of its pre-tokenizer's output and refuses unknown ones. qwen2, gemma and gemma2 carry
a tiny SentencePiece tokenizer (tiny_tokenizers.py, 1024 pieces) instead: Gemma's converter
reads only a SentencePiece tokenizer.model, and Qwen2's tries one before BPE (transformers 5
would load SmolLM2's vocabulary in a qwen2 folder with Qwen2's pre-tokenizer, whose hash the
converter does not know). Weights come from `torch.manual_seed(0)` and the architecture's own
initialisation.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.support.tiny_tokenizers import SPM_IDS, SPM_VOCAB, spm_ids, write_spm_tokenizer

VOCAB = 49152
HIDDEN = 64
LAYERS = 2
HEADS = 4
KV_HEADS = 2
MLP = 128
POSITIONS = 256
# SmolLM2's special tokens: <|endoftext|> 0, <|im_start|> 1, <|im_end|> 2.
IDS = {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 2}
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")
TOKENIZER_FILES += ("tokenizer.model",)  # the SentencePiece families' (SmolLM2 has none)
CARD = "---\nlicense: apache-2.0\n---\n# A tiny random-weight {arch} model for owl's tests\n"

_COMMON: dict[str, Any] = {
    "vocab_size": VOCAB,
    "hidden_size": HIDDEN,
    "num_hidden_layers": LAYERS,
    "num_attention_heads": HEADS,
    "intermediate_size": MLP,
    "max_position_embeddings": POSITIONS,
    **IDS,
}
_GQA = {**_COMMON, "num_key_value_heads": KV_HEADS}
# The families that carry the tiny SentencePiece tokenizer, not SmolLM2's.
SPM_FAMILIES = ("qwen2", "gemma", "gemma2")


def _llama_like(**extra: Any) -> dict[str, Any]:
    return {**_GQA, **extra}


def _spm(**extra: Any) -> dict[str, Any]:
    return _llama_like(**{**extra, "vocab_size": SPM_VOCAB, **SPM_IDS})


# family → (model_type, config keyword arguments)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", _llama_like(tie_word_embeddings=False)),
    "mistral": ("mistral", _llama_like(sliding_window=None)),
    "qwen2": ("qwen2", _spm()),
    "qwen3": ("qwen3", _llama_like(head_dim=16)),
    "gemma": ("gemma", _spm(head_dim=16)),
    "gemma2": ("gemma2", _spm(head_dim=16, query_pre_attn_scalar=16, sliding_window=128)),
    "gemma3": (
        "gemma3_text",
        _llama_like(head_dim=16, query_pre_attn_scalar=16, sliding_window=128),
    ),
    "falcon": (
        "falcon",
        {
            **IDS,
            "vocab_size": VOCAB,
            "hidden_size": HIDDEN,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "num_kv_heads": KV_HEADS,
            "new_decoder_architecture": True,
            # no ffn_hidden_size: llama.cpp assumes Falcon's MLP is 4 x hidden (256 here)
            "max_position_embeddings": POSITIONS,
        },
    ),
    "gpt_neox": ("gpt_neox", {**_COMMON, "rotary_pct": 0.25}),
    "gptj": (
        "gptj",
        {
            **IDS,
            "vocab_size": VOCAB,
            "n_embd": HIDDEN,
            "n_layer": LAYERS,
            "n_head": HEADS,
            "n_inner": MLP,
            "n_positions": POSITIONS,
            "rotary_dim": 8,
        },
    ),
    "bloom": (
        "bloom",
        {**IDS, "vocab_size": VOCAB, "hidden_size": HIDDEN, "n_layer": LAYERS, "n_head": HEADS},
    ),
    "granite": ("granite", _llama_like()),
    "opt": (
        "opt",
        {
            **IDS,
            "vocab_size": VOCAB,
            "hidden_size": HIDDEN,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "ffn_dim": MLP,
            "max_position_embeddings": POSITIONS,
            "word_embed_proj_dim": HIDDEN,
        },
    ),
    "mixtral": ("mixtral", _llama_like(num_local_experts=4, num_experts_per_tok=2)),
    "deepseek_v2": (
        "deepseek_v2",
        _llama_like(
            num_key_value_heads=HEADS,
            kv_lora_rank=32,
            # q_lora_rank=None (DeepSeek-V2-Lite) converts, but llama.cpp 0.3.36 cannot
            # quantize it ("key not found in model: deepseek2.attention.q_lora_rank")
            q_lora_rank=32,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            n_routed_experts=4,
            n_shared_experts=1,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            first_k_dense_replace=1,
            n_group=1,
            topk_group=1,
        ),
    ),
    "deepseek_v3": (
        "deepseek_v3",
        _llama_like(
            num_key_value_heads=HEADS,
            kv_lora_rank=32,
            q_lora_rank=32,
            qk_nope_head_dim=16,
            qk_rope_head_dim=8,
            v_head_dim=16,
            n_routed_experts=4,
            n_shared_experts=1,
            num_experts_per_tok=2,
            moe_intermediate_size=32,
            first_k_dense_replace=1,
            n_group=1,
            topk_group=1,
            num_nextn_predict_layers=0,
        ),
    ),
}
FAMILIES = tuple(CONFIGS)


def tiny_config(family: str):  # noqa: ANN201 (a transformers PretrainedConfig)
    from transformers import AutoConfig

    model_type, kwargs = CONFIGS[family]
    return AutoConfig.for_model(model_type, **kwargs)


def tiny_model(family: str):  # noqa: ANN201 (a transformers PreTrainedModel, float32, eval)
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(tiny_config(family), dtype=torch.float32)
    return model.eval()


def build_tiny_folder(family: str, dest: Path, tokenizer_folder: Path) -> Path:
    """Save the tiny `family` model as safetensors in `dest`/tiny-<family>, with the tokenizer
    files of `tokenizer_folder` (SmolLM2's; the tiny SentencePiece tokenizer, built once in
    `dest`/tiny-spm-tokenizer, for SPM_FAMILIES) and a model card; returns the folder.

    Built once: a folder that is already there is returned as it is.
    """
    folder = dest / f"tiny-{family.replace('_', '-')}"
    if (folder / "config.json").is_file():
        return folder
    if family in SPM_FAMILIES:
        tokenizer_folder = write_spm_tokenizer(dest / "tiny-spm-tokenizer")
    staging = dest / f"{folder.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    tiny_model(family).save_pretrained(staging)
    for name in TOKENIZER_FILES:
        if (tokenizer_folder / name).is_file():
            shutil.copy(tokenizer_folder / name, staging / name)
    (staging / "README.md").write_text(CARD.format(arch=family))
    staging.rename(folder)
    return folder


def reference_logits(folder: Path, ids: list[int]):  # noqa: ANN201 (numpy array, [len(ids), vocab])
    """transformers' float32 logits of the model saved in `folder` at every position of `ids`."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].float().numpy()


# --- the fixed input of the coverage checks (tests/support/coverage.py) ----------------------

# Fixed input: SmolLM2's token ids of "<|im_start|>The quick brown fox jumps over the lazy dog.
# It was a sunny day".
INPUT_IDS = [1, 504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 657, 436, 253]
INPUT_IDS += [12926, 1194]  # " sunny day"
TEXT = "The quick brown fox jumps over the lazy dog. It was a sunny day"


def input_ids(family: str) -> list[int]:
    """The fixed input in `family`'s vocabulary: INPUT_IDS, or for SPM_FAMILIES <bos> and the
    tiny SentencePiece tokenizer's ids of TEXT, as many positions as INPUT_IDS."""
    if family in SPM_FAMILIES:
        return spm_ids(TEXT)[: len(INPUT_IDS)]
    return INPUT_IDS
