"""Tiny random-weight image embedding folders, laid out as the Hub's are: a CLIPModel (text
and vision towers, projection 16) with SmolLM2's tokenizer and a CLIP image processor at
32x32, and a Dinov2Model with its processor; plus transformers' own vectors for them, for
owl's image embedder to be compared against. Weights from `torch.manual_seed(0)`."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

IMAGE_SIZE = 32
PATCH = 8
PROJECTION = 16


def build_tiny_clip(dest: Path, tokenizer_folder: Path) -> Path:
    import torch
    from transformers import AutoTokenizer, CLIPConfig, CLIPImageProcessor, CLIPModel

    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder)
    config = CLIPConfig(
        text_config={
            "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "image_size": IMAGE_SIZE, "patch_size": PATCH,
        },
        projection_dim=PROJECTION,
    )  # fmt: skip
    torch.manual_seed(0)
    CLIPModel(config).eval().save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
    _processor(CLIPImageProcessor).save_pretrained(dest)
    _card(dest, "CLIP")
    return dest


def build_tiny_dinov2(dest: Path) -> Path:
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    dest.mkdir(parents=True, exist_ok=True)
    config = Dinov2Config(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=IMAGE_SIZE, patch_size=PATCH,
    )  # fmt: skip
    torch.manual_seed(0)
    Dinov2Model(config).eval().save_pretrained(dest, safe_serialization=True)
    _processor(BitImageProcessor).save_pretrained(dest)
    _card(dest, "DINOv2")
    return dest


def _processor(kind):  # noqa: ANN001, ANN202 (a transformers image processor class)
    return kind(
        size={"shortest_edge": IMAGE_SIZE},
        crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        do_center_crop=True,
    )


def _card(dest: Path, kind: str) -> None:
    (dest / "README.md").write_text(
        f"---\nlicense: apache-2.0\n---\n# A tiny random-weight {kind} for owl's tests\n",
        encoding="utf-8",
    )


def reference_image_vectors(folder: Path, images: list) -> np.ndarray:  # PIL images
    """transformers' own vectors of `images`: get_image_features (CLIP) or pooler_output
    (DINOv2), L2-normalised."""
    import torch
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(folder).eval()
    values = AutoImageProcessor.from_pretrained(folder)(images=images, return_tensors="pt")
    with torch.inference_mode():
        if hasattr(model, "get_image_features"):
            out = model.get_image_features(pixel_values=values["pixel_values"])
        else:
            out = model(pixel_values=values["pixel_values"])
    tensor = out if hasattr(out, "detach") else out.pooler_output
    return _normalised(tensor.numpy())


def reference_text_vectors(folder: Path, texts: list[str]) -> np.ndarray:
    import torch
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tokenizer(text)["input_ids"]])
            out = model.get_text_features(input_ids=ids)
            rows.append((out if hasattr(out, "detach") else out.pooler_output).numpy()[0])
    return _normalised(np.stack(rows))


def _normalised(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def copy_without(folder: Path, dest: Path, name: str) -> Path:
    """A copy of `folder` without the file `name` (a broken model folder)."""
    shutil.copytree(folder, dest)
    (dest / name).unlink()
    return dest
