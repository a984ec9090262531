"""Images among /v1/embeddings inputs, for image embedding models (CLIP, SigLIP, DINOv2).

OpenAI's embeddings API takes text only; owl also takes, in the `input` list, an image as
a chat content part (`{"type": "image_url", "image_url": {"url": "data:…"}}`) or as
`{"image": "data:… or base64"}` (Jina's and Cohere's shape), texts as strings. Images
are data: URLs, base64, or files under the server's --image-folder; owl never fetches an
http(s) URL a request names.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from owl.config import Settings
from owl.engine.images import Pixels, decode_image, from_base64, image_bytes
from owl.errors import InvalidPrompt


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="ignore")
    url: str = Field(min_length=1)


class ImagePart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["image_url"]
    image_url: ImageUrl


class BareImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    image: str = Field(min_length=1)


EmbeddingPart = ImagePart | BareImage


def parts_to_inputs(parts: list[str | EmbeddingPart], settings: Settings) -> list[str | Pixels]:
    """Each input as a text or decoded pixels (InvalidImage for what is not a usable image)."""
    inputs: list[str | Pixels] = []
    for part in parts:
        if isinstance(part, str):
            inputs.append(part)
        else:
            inputs.append(_pixels(part, settings))
    if not inputs:
        raise InvalidPrompt("'input' is empty; send texts or images")
    return inputs


def _pixels(part: ImagePart | BareImage, settings: Settings) -> Pixels:
    limit = settings.max_image_bytes
    if isinstance(part, ImagePart):
        data = image_bytes(part.image_url.url, max_bytes=limit, folder=settings.image_folder)
    elif part.image.startswith(("data:", "file:", "http:", "https:", "/")):
        data = image_bytes(part.image, max_bytes=limit, folder=settings.image_folder)
    else:
        data = from_base64(part.image, max_bytes=limit)
    return decode_image(data, max_bytes=limit, max_pixels=settings.max_image_pixels)
