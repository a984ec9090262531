"""Tiny random-weight transformers models, one per architecture family, for coverage tests.

Every model has 2 layers, hidden size 64, 4 attention heads (2 key/value heads where the
architecture has grouped-query attention), an MLP of 128, 256 positions and SmolLM2's
vocabulary (49152), so that it can carry SmolLM2's tokenizer: llama.cpp's converter
recognises a BPE tokenizer by a hash of its pre-tokenizer's output and refuses unknown ones.
Weights come from `torch.manual_seed(0)` and the architecture's own initialisation.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

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


def _llama_like(**extra: Any) -> dict[str, Any]:
    return {**_GQA, **extra}


# family → (model_type, config keyword arguments)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "llama": ("llama", _llama_like(tie_word_embeddings=False)),
    "mistral": ("mistral", _llama_like(sliding_window=None)),
    "qwen2": ("qwen2", _llama_like()),
    "qwen3": ("qwen3", _llama_like(head_dim=16)),
    "gemma": ("gemma", _llama_like(head_dim=16)),
    "gemma2": ("gemma2", _llama_like(head_dim=16, query_pre_attn_scalar=16, sliding_window=128)),
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
    files of `tokenizer_folder` (SmolLM2's) and a model card; returns the folder.

    Built once: a folder that is already there is returned as it is.
    """
    folder = dest / f"tiny-{family.replace('_', '-')}"
    if (folder / "config.json").is_file():
        return folder
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


# --- the pipeline: folder → owl convert f16 → owl quantize Q8_0 → llama.cpp logits -----------

# Fixed input: SmolLM2's token ids of "<|im_start|>The quick brown fox jumps over the lazy dog.
# It was a sunny day".
INPUT_IDS = [1, 504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 657, 436, 253]
INPUT_IDS += [12926, 1194]  # " sunny day"
STAGES = ("convert", "quantize", "runs", "f16", "q8_0")


def llama_logits(path: Path, ids: list[int], *, threads: int | None = None):  # noqa: ANN201
    """llama.cpp's logits of the GGUF at `path` at every position of `ids` (no BOS added)."""
    import llama_cpp
    import numpy as np

    llm = llama_cpp.Llama(
        model_path=str(path), n_ctx=64, logits_all=True, n_threads=threads, verbose=False
    )
    try:
        llm.eval(ids)
        return np.array(llm.scores[: len(ids)], dtype=np.float32)
    finally:
        llm.close()


def compare(ours, reference) -> dict[str, float]:  # noqa: ANN001
    """Top-1 agreement (share of positions) and max/mean |Δlogit| of two [positions, vocab]."""
    import numpy as np

    diff = np.abs(ours - reference)
    top1 = float((ours.argmax(1) == reference.argmax(1)).mean())
    return {"top1": top1, "max": float(diff.max()), "mean": float(diff.mean())}


# Logits tolerance per GGUF type against transformers' float32 (set from measurements, see
# docs/architectures.md and tests/quantize/test_architectures.py): share of positions whose top
# token agrees (at least), max |Δlogit| over all positions and the whole vocabulary (at most).
TOLERANCE = {"f16": {"top1": 0.8, "max": 0.02}, "q8_0": {"top1": 0.6, "max": 0.1}}


def within(found: dict[str, float], kind: str) -> bool:
    limit = TOLERANCE[kind]
    return found["top1"] >= limit["top1"] and found["max"] <= limit["max"]


def _reason(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    # The converter's errors end with its output's last lines, joined by " | ".
    lines = [part.strip() for line in text.splitlines() for part in line.split(" | ")]
    lines = [line for line in lines if line]
    return f"{type(err).__name__}: {lines[-1][:300]}" if lines else type(err).__name__


def coverage(family: str, *, work: Path, store, settings) -> dict[str, Any]:  # noqa: ANN001
    """Take `family`'s tiny model through convert f16 → quantize Q8_0 → llama.cpp logits.

    Returns {"family", "convert", "quantize", "runs", "f16", "q8_0": bool | None (not reached),
    "f16_found"/"q8_0_found": compare(), "error": the first failure's reason}. `work` holds the
    shared SmolLM2 folder, the converter and the tiny folders.
    """
    from owl.quantize.convert import convert
    from owl.quantize.quantize import quantize
    from owl.store.ref import parse_ref
    from owl.store.sources.package import locate
    from tests.conftest import EMBEDDED_REF
    from tests.quantize.test_convert import shared_tools, smollm2_hf_folder

    result: dict[str, Any] = {"family": family, **dict.fromkeys(STAGES)}
    tokenizer = smollm2_hf_folder(work, locate(parse_ref(EMBEDDED_REF)))
    tools = shared_tools(work)
    folder = build_tiny_folder(family, work, tokenizer)
    reference = reference_logits(folder, INPUT_IDS)
    stage = "convert"
    try:
        f16 = convert(folder, store=store, settings=settings, tools=tools)
        result["convert"] = True
        stage = "quantize"
        q8_0 = quantize(f16, store=store, settings=settings, qtype="Q8_0")
        result["quantize"] = True
        stage = "runs"
        for kind, manifest in (("f16", f16), ("q8_0", q8_0)):
            found = compare(llama_logits(store.weights_path(manifest), INPUT_IDS), reference)
            result["runs"] = True
            result[f"{kind}_found"] = found
            result[kind] = within(found, kind)
    except Exception as err:  # noqa: BLE001 (the matrix records any failure, with its reason)
        result[stage] = False
        result["error"] = f"{stage}: {_reason(err)}"
    return result
