"""Images that requests send (chat content parts, Ollama's `images`, embedding inputs) to
owl Pixels, under the server's limits: a data: URL, bare base64, or a file under the
server's --image-folder. owl never fetches an http(s) URL that a request names."""

from __future__ import annotations

from collections.abc import Sequence

from owl.config import Settings
from owl.engine.images import IMAGE_MARKER, Pixels, decode_image, from_base64, image_bytes
from owl.errors import InvalidImage, InvalidPrompt

_URL_PREFIXES = ("data:", "file:", "http:", "https:", "/")


def image_pixels(ref: str, settings: Settings) -> Pixels:
    """The decoded image `ref` names (InvalidImage, saying why, for anything else)."""
    limit = settings.max_image_bytes
    if ref.startswith(_URL_PREFIXES):
        data = image_bytes(ref, max_bytes=limit, folder=settings.image_folder)
    else:
        data = from_base64(ref, max_bytes=limit)
    return decode_image(data, max_bytes=limit, max_pixels=settings.max_image_pixels)


def all_pixels(refs: Sequence[str], settings: Settings) -> list[Pixels]:
    if len(refs) > settings.max_images:
        raise InvalidImage(
            f"the request has {len(refs)} images, more than the {settings.max_images} one "
            "request may send (OWL_MAX_IMAGES)"
        )
    return [image_pixels(ref, settings) for ref in refs]


def plain_text(text: str) -> str:
    """Message text, which may not hold the marker that stands for an image."""
    if IMAGE_MARKER in text:
        raise InvalidPrompt(f"message text may not contain {IMAGE_MARKER}: send images as images")
    return text
