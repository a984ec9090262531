"""Image embeddings with transformers: CLIP-style models (CLIPModel, SiglipModel: texts and
images in one space, so a text's vector and an image's compare by cosine) and image-only
encoders (Dinov2Model: the layer-normed class token, transformers' pooler output).

The vectors are transformers' own (`get_text_features`, `get_image_features`, DINOv2's
`pooler_output`), L2-normalised unless asked not to: tests/engine/transformers/
test_image_embedder.py compares them with the reference library's. Images arrive as owl
Pixels (owl/engine/images.py: decoded under a pixel limit), never as bytes or a URL.
One embedding call runs at a time (engine/turns.py); torch is imported when one is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from owl.engine.backend import Capability, Occupancy
from owl.engine.embeddings import Embeddings, checked_input
from owl.engine.images import Pixels
from owl.engine.turns import Turns
from owl.errors import EngineError, NotEmbeddable
from owl.formats.hf_folder import model_class_of, read_folder_config

# Model classes whose text and image towers share one embedding space.
PAIRED = ("CLIPModel", "SiglipModel")
IMAGE_ONLY = ("Dinov2Model",)
# Activations of one image or text at a time are small beside the weights (a ViT-B/32's
# are tens of MB); half the weights again leaves a margin.
ACTIVATIONS_FACTOR = 0.5


class ImageEmbedder:
    """A CLIP-style or image-only Hugging Face folder that turns images (and, for CLIP-style
    models, texts) into vectors. `dimensions` is the size of every vector it makes."""

    def __init__(self, folder: Path, *, name: str = "", threads: int | None = None) -> None:
        self.name = name or folder.name
        model_class = _model_class(folder, self.name)
        import torch
        import transformers
        from transformers import AutoImageProcessor, AutoModel

        if threads:
            torch.set_num_threads(threads)
        transformers.utils.logging.disable_progress_bar()
        self.paired = model_class.endswith(PAIRED)
        try:
            self._model: Any = AutoModel.from_pretrained(
                folder, local_files_only=True, use_safetensors=True
            ).eval()
            self._images: Any = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
            self._tokenizer: Any = None
            if self.paired:
                from transformers import AutoTokenizer

                self._tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise EngineError(f"transformers could not load '{self.name}': {err}") from None
        self._torch = torch
        config = self._model.config
        if self.paired:
            self.dimensions = int(config.projection_dim if hasattr(config, "projection_dim")
                                  else config.text_config.hidden_size)  # fmt: skip
            self.n_ctx = int(config.text_config.max_position_embeddings)
        else:
            self.dimensions = int(config.hidden_size)
            self.n_ctx = 0
        self.capabilities = frozenset({Capability.EMBED, Capability.SEE})
        weights = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
        self.memory_bytes = int(weights * (1 + ACTIVATIONS_FACTOR))
        self._turns = Turns()

    def occupancy(self) -> Occupancy:
        return self._turns.occupancy()

    def embed(
        self, texts: Sequence[str], *, normalize: bool = True, truncate: bool = False
    ) -> Embeddings:
        """One vector per text (CLIP-style models only), in the space of the images'."""
        if not self.paired:
            raise NotEmbeddable(
                f"'{self.name}' embeds images only (an image encoder has no text tower); send "
                "images, or embed text with a CLIP model or a GGUF embedding model"
            )
        ids = [self._tokenizer(text, truncation=False)["input_ids"] for text in texts]
        return self.embed_tokens(ids, normalize=normalize, truncate=truncate)

    def embed_tokens(
        self, tokens: Sequence[Sequence[int]], *, normalize: bool = True, truncate: bool = False
    ) -> Embeddings:
        if not self.paired:
            return self.embed([], normalize=normalize)  # the refusal above
        vocab = int(self._model.config.text_config.vocab_size)
        rows = [
            checked_input(
                list(ids), index, vocab=vocab, n_ctx=self.n_ctx, truncate=truncate, name=self.name
            )
            for index, ids in enumerate(tokens)
        ]
        # One text at a time: no padding, so that no pad token's id or mask can differ from
        # the reference's for the same text.
        with self._turns.turn():
            vectors = [self._text_vector(ids) for ids in rows]
        return _embeddings(vectors, [len(ids) for ids in rows], normalize)

    def embed_images(self, images: Sequence[Pixels], *, normalize: bool = True) -> Embeddings:
        """One vector per image; token_counts are the image tokens each was read as."""
        if not images:
            return Embeddings([], [])
        pil = [image.to_pil() for image in images]
        values = self._images(images=pil, return_tensors="pt")["pixel_values"]
        with self._turns.turn(), self._torch.inference_mode():
            model = self._live()
            if self.paired:
                features = model.get_image_features(pixel_values=values)
            else:
                features = model(pixel_values=values).pooler_output
        vectors = [row for row in _array(features)]
        return _embeddings(vectors, [self._image_tokens(values)] * len(images), normalize)

    def _text_vector(self, ids: list[int]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            features = self._live().get_text_features(input_ids=torch.tensor([ids]))
        return _array(features)[0]

    def _image_tokens(self, values: Any) -> int:
        vision = getattr(self._model.config, "vision_config", self._model.config)
        height, width = values.shape[-2:]
        return (height // vision.patch_size) * (width // vision.patch_size)

    def _live(self) -> Any:
        if self._model is None:
            raise EngineError(f"'{self.name}' was unloaded; load it again")
        return self._model

    def close(self, *, cancel: bool = False) -> None:
        with self._turns.run:
            self._model = None


def _array(features: Any) -> np.ndarray:
    # transformers 5 returns a model output where 4 returned the tensor itself.
    tensor = features if hasattr(features, "detach") else features.pooler_output
    return tensor.detach().float().numpy()


def _embeddings(vectors: Sequence[np.ndarray], counts: list[int], normalize: bool) -> Embeddings:
    rows = []
    for vector in vectors:
        if normalize:
            norm = float(np.linalg.norm(vector))
            vector = vector / norm if norm > 0 else vector
        rows.append([float(value) for value in vector])
    return Embeddings(rows, counts)


def _model_class(folder: Path, name: str) -> str:
    model_class = model_class_of(read_folder_config(folder))
    if not (model_class and model_class.endswith(PAIRED + IMAGE_ONLY)):
        raise NotEmbeddable(
            f"'{name}' is no image embedding model (its config.json names "
            f"{model_class or 'no model class'}): owl makes embeddings with llama.cpp from "
            f"GGUF models, so convert it first (`owl convert {name}`); it embeds images with "
            f"{', '.join(PAIRED + IMAGE_ONLY)} folders"
        )
    return model_class
