"""A tiny random-weight vision-language model (SmolVLM: a SigLIP-style vision tower, a pixel
shuffle connector and a Llama text model), saved as a Hugging Face folder and converted by
llama.cpp's own converter into a GGUF and its projector (mmproj).

The text side is tiny_models' Llama shape with SmolLM2's tokenizer plus SmolVLM's image
tokens. Images are IMAGE_SIZE square, split into no tiles, so both transformers' processor
and llama.cpp's clip preprocessing see the image at its own size: IMAGE_TOKENS tokens
(patches / scale_factor²). Weights come from `torch.manual_seed(0)`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from tests.support.tiny_models import HEADS, HIDDEN, KV_HEADS, LAYERS, MLP

IMAGE_SIZE = 64
PATCH = 8
SCALE_FACTOR = 2
IMAGE_TOKENS = (IMAGE_SIZE // PATCH) ** 2 // SCALE_FACTOR**2  # 16
IMAGE_TOKEN = "<image>"
# SmolVLM's image tokens, as its processor writes them around an image's <image> run.
SPECIAL = ["<fake_token_around_image>", IMAGE_TOKEN, "<end_of_utterance>", "<global-img>"]
SPECIAL += [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]
CARD = "---\nlicense: apache-2.0\n---\n# A tiny random-weight SmolVLM for owl's tests\n"
# SmolVLM's template, which also takes a message's content as one string (as owl sends it,
# with mtmd's marker where each image is).
CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'] is string %}{{': ' + message['content']}}{% else %}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}{% endif %}"
    "<end_of_utterance>\n{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)


@dataclass(frozen=True)
class TinyVlm:
    folder: Path  # the Hugging Face folder
    model: Path  # the language model GGUF (f32)
    projector: Path  # the mmproj GGUF (f32)


def build_tiny_vlm_folder(dest: Path, tokenizer_folder: Path) -> Path:
    """Save the tiny SmolVLM with its processor in `dest`/tiny-smolvlm (once); the folder."""
    folder = dest / "tiny-smolvlm"
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import (
        AutoTokenizer,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
    )

    staging = dest / "tiny-smolvlm.partial"
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL})
    vocab = len(tokenizer)
    config = SmolVLMConfig(
        vision_config={
            "hidden_size": HIDDEN,
            "intermediate_size": MLP,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "image_size": IMAGE_SIZE,
            "patch_size": PATCH,
        },
        text_config={
            "model_type": "llama",
            "vocab_size": vocab,
            "hidden_size": HIDDEN,
            "intermediate_size": MLP,
            "num_hidden_layers": LAYERS,
            "num_attention_heads": HEADS,
            "num_key_value_heads": KV_HEADS,
            "max_position_embeddings": 512,
            "tie_word_embeddings": False,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 2,
        },
        scale_factor=SCALE_FACTOR,
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = SmolVLMForConditionalGeneration(config).to(torch.float32).eval()
    model.save_pretrained(staging)
    # The processor's parts, saved one by one: SmolVLMProcessor itself needs num2words
    # (LGPL), which owl does not install; the reference prompt is written out instead
    # (reference_ids).
    image_processor().save_pretrained(staging)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(staging)
    (staging / "README.md").write_text(CARD)
    staging.rename(folder)
    return folder


def image_processor():  # noqa: ANN201 (transformers' SmolVLM image processor, PIL backend)
    from transformers.models.smolvlm.image_processing_pil_smolvlm import (
        SmolVLMImageProcessorPil,
    )

    return SmolVLMImageProcessorPil(
        do_image_splitting=False,
        size={"longest_edge": IMAGE_SIZE},
        max_image_size={"longest_edge": IMAGE_SIZE},
    )


def convert_tiny_vlm(folder: Path, converter, dest: Path) -> TinyVlm:  # noqa: ANN001 (Converter)
    """The tiny SmolVLM `folder` as llama.cpp's two GGUFs (f32), in `dest` (once).

    The projector converts from the folder as it is (`--mmproj`). The language model does
    not: this converter registers SmolVLM's class for the projector only, and converts the
    text model of a SmolVLM folder as a Llama (it strips the `text_model.` prefix itself);
    so it reads a copy of the folder whose config names LlamaForCausalLM.
    """
    import json

    from owl.quantize.converter import run_converter

    made = TinyVlm(folder, dest / "tiny-smolvlm-f32.gguf", dest / "mmproj-tiny-smolvlm-f32.gguf")
    if made.model.is_file() and made.projector.is_file():
        return made
    run_converter(converter, folder, made.projector, outtype="f32", mmproj=True)
    # Named as the folder is: the converter takes the model's general.name from it.
    text = dest / "text-model" / folder.name
    shutil.rmtree(text, ignore_errors=True)
    text.mkdir(parents=True)
    for path in folder.iterdir():
        if path.name != "config.json":
            (text / path.name).symlink_to(path.resolve())
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    (text / "config.json").write_text(json.dumps(config))
    run_converter(converter, text, made.model, outtype="f32")
    return made


def shared_tiny_vlm(base: Path, bundled_gguf: Path) -> TinyVlm:
    """The tiny SmolVLM and its two GGUFs, made once per test session under `base` (the
    session's base temp folder) and shared read-only by every module that needs them."""
    from owl.quantize.converter import ensure_converter
    from tests.support.tiny_lora import smollm2_tokenizer

    folder = build_tiny_vlm_folder(base / "tiny-vlm", smollm2_tokenizer(base, bundled_gguf))
    dest = base / "tiny-vlm-gguf"
    dest.mkdir(exist_ok=True)
    return convert_tiny_vlm(folder, ensure_converter(base / "owl-tools"), dest)
