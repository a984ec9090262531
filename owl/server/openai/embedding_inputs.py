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
from owl.engine.images import Pixels
from owl.errors import InvalidPrompt
from owl.server.image_inputs import image_pixels


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
            ref = part.image_url.url if isinstance(part, ImagePart) else part.image
            inputs.append(image_pixels(ref, settings))
    if not inputs:
        raise InvalidPrompt("'input' is empty; send texts or images")
    return inputs
