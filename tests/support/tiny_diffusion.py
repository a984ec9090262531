"""Tiny random-weight Stable Diffusion pipelines in diffusers' layout, built offline.

`build_tiny_sd` writes a StableDiffusionPipeline (UNet2DConditionModel, AutoencoderKL,
CLIPTextModel, CLIPTokenizer, a scheduler) with save_pretrained: model_index.json and one
sub-folder per component, safetensors weights, as a real Stable Diffusion 1.x/2.x folder is.
`build_tiny_sdxl` writes a StableDiffusionXLPipeline (two text encoders, the second with a
projection, and the UNet's text-time conditioning). Weights come from a fixed torch seed, so
every build is the same model; a 32×32 image takes a fraction of a second on one core.

The tokenizer is CLIP's byte-level BPE over the 256 byte symbols (each also with the
word-end mark "</w>"), a few merges and CLIP's two special tokens: enough for any prompt.
`reference_images` draws with diffusers itself, what owl's pixels are compared with.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.support.owl_server import Server

TINY_SIZE = 32  # pixels a side: the UNet's sample size 16 × the VAE's scale factor 2
MERGES = (("t", "h"), ("th", "e</w>"), ("a", "n"), ("o", "n</w>"), ("c", "a"), ("ca", "t</w>"))
START, END = "<|startoftext|>", "<|endoftext|>"
SCHEDULERS = ("EulerDiscreteScheduler", "DDIMScheduler", "DPMSolverMultistepScheduler")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's (and CLIP's) map of the 256 bytes to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def tiny_vocabulary() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """CLIP's vocabulary layout in little: byte symbols, byte symbols ending a word, merges,
    then the special tokens."""
    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for symbol in (*symbols, *(s + "</w>" for s in symbols)):
        vocab[symbol] = len(vocab)
    for left, right in MERGES:
        vocab[left + right] = len(vocab)
    vocab[START] = len(vocab)
    vocab[END] = len(vocab)
    return vocab, list(MERGES)


def tiny_tokenizer():  # noqa: ANN201 (a transformers CLIPTokenizer)
    from transformers import CLIPTokenizer

    vocab, merges = tiny_vocabulary()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    tokenizer.model_max_length = 77
    return tokenizer


def _text_config(vocab: dict[str, int], *, hidden: int) -> Any:
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        bos_token_id=vocab[START],
        eos_token_id=vocab[END],
        pad_token_id=vocab[END],
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        projection_dim=hidden,
        num_attention_heads=2,
        num_hidden_layers=2,
        vocab_size=len(vocab),
        max_position_embeddings=77,
    )


def _vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=TINY_SIZE,
    )


def _scheduler(name: str) -> Any:
    import diffusers

    # Stable Diffusion's own noise schedule (scaled linear betas), whichever sampler.
    return getattr(diffusers, name)(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )


def build_tiny_sd(dest: Path, *, scheduler: str = SCHEDULERS[0], seed: int = 0) -> Path:
    """A tiny StableDiffusionPipeline saved at `dest` in diffusers' layout; returns `dest`."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    vocab, _ = tiny_vocabulary()
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=TINY_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=16,
        norm_num_groups=8,
        attention_head_dim=4,
    )
    pipeline = StableDiffusionPipeline(
        unet=unet,
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config(vocab, hidden=16)).eval(),
        tokenizer=tiny_tokenizer(),
        scheduler=_scheduler(scheduler),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(dest, safe_serialization=True)
    return dest


def build_tiny_sdxl(dest: Path, *, seed: int = 0) -> Path:
    """A tiny StableDiffusionXLPipeline saved at `dest` in diffusers' layout."""
    import torch
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(seed)
    vocab, _ = tiny_vocabulary()
    hidden = 16
    time_dim = 8
    unet = UNet2DConditionModel(
        block_out_channels=(16, 32),
        layers_per_block=1,
        sample_size=TINY_SIZE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=time_dim,
        # six size and crop numbers, each embedded in time_dim, and the pooled text embedding
        projection_class_embeddings_input_dim=6 * time_dim + hidden,
        cross_attention_dim=2 * hidden,  # both encoders' hidden states side by side
        norm_num_groups=8,
    )
    pipeline = StableDiffusionXLPipeline(
        unet=unet,
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config(vocab, hidden=hidden)).eval(),
        text_encoder_2=CLIPTextModelWithProjection(_text_config(vocab, hidden=hidden)).eval(),
        tokenizer=tiny_tokenizer(),
        tokenizer_2=tiny_tokenizer(),
        scheduler=_scheduler(SCHEDULERS[0]),
    )
    pipeline.save_pretrained(dest, safe_serialization=True)
    return dest


def edit_index(folder: Path, **changes: Any) -> None:
    """Change model_index.json's entries (None removes one): for the hostile folders."""
    path = folder / "model_index.json"
    index = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            index.pop(key, None)
        else:
            index[key] = value
    path.write_text(json.dumps(index, indent=2))


def reference_images(
    folder: Path,
    prompt: str,
    *,
    steps: int,
    size: tuple[int, int] = (TINY_SIZE, TINY_SIZE),
    seeds: list[int],
    guidance: float | None = None,
    negative_prompt: str | None = None,
) -> list[Any]:
    """The images diffusers itself draws from the pipeline at `folder`: one per seed (each
    its own torch.Generator), as PIL images, with diffusers' defaults for what is not given."""
    import diffusers
    import torch

    index = json.loads((folder / "model_index.json").read_text())
    pipeline_class = getattr(diffusers, index["_class_name"])
    pipeline = pipeline_class.from_pretrained(folder, use_safetensors=True, local_files_only=True)
    pipeline.set_progress_bar_config(disable=True)
    extra = {} if guidance is None else {"guidance_scale": guidance}
    width, height = size
    with torch.inference_mode():
        result = pipeline(
            prompt,
            negative_prompt=negative_prompt,
            num_inference_steps=steps,
            width=width,
            height=height,
            num_images_per_prompt=len(seeds),
            generator=[torch.Generator().manual_seed(seed) for seed in seeds],
            **extra,
        )
    return list(result.images)


TINY_SD = "tiny-sd"
ENDLESS_STEPS = 1000  # OWL_MAX_DRAW_STEPS's most: a drawing no test waits for


@contextmanager
def tiny_sd_server(root: Path) -> Iterator[Server]:
    """A real `owl serve` over `root` with build_tiny_sd pulled as TINY_SD (through `owl
    pull`), two images a request and drawings of up to ENDLESS_STEPS steps, so that a test
    can start one that only its client's leaving ends."""
    from tests.support.cli import owl
    from tests.support.owl_server import running_server

    folder = build_tiny_sd(root / TINY_SD)
    pulled = owl(root / "owl-home", "pull", str(folder), "--name", TINY_SD)
    assert pulled.returncode == 0, pulled.stderr
    env = {"OWL_MAX_DRAW_IMAGES": "2", "OWL_MAX_DRAW_STEPS": str(ENDLESS_STEPS)}
    with running_server(root, env=env) as up:
        yield up
