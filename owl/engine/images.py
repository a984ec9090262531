"""Untrusted images to RGB pixels: what vision models and image embedders take, and nothing else.

An image reaches a C library only as width × height × 3 bytes of RGB that Pillow decoded
here: never as the file itself, so a hostile PNG or JPEG meets Pillow's decoders, which are
fuzzed and patched, and not the image loaders vendored into llama.cpp. The limits come
before the pixels: the file's size, then the dimensions its header declares (a decompression
bomb is a small file that declares a huge image), then the decode.

Where an image comes from is the caller's to say: a data: URL or bare base64 (what OpenAI's
and Ollama's APIs carry), or a file under a folder the server was told to allow. owl never
fetches an http(s) URL a request names: a server that fetches what its clients name can be
made to reach the machines behind it (SSRF).

Pillow is imported when an image is decoded: importing owl.engine loads no library.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from owl.errors import InvalidImage

# The decoders Pillow may pick: the formats people send. Others (PSD, TIFF's many codecs,
# EPS, which runs Ghostscript) stay out: each one more is more parser for a hostile file.
FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")
NAMES = "PNG, JPEG, WebP, GIF or BMP"


# Where an image goes in a rendered prompt: llama.cpp's mtmd default marker (vision.py checks
# that it is), written here so that the server and templates need not load llama.cpp.
IMAGE_MARKER = "<__media__>"


@dataclass(frozen=True)
class Pixels:
    """A decoded image: `rgb` holds width × height × 3 bytes, row by row."""

    width: int
    height: int
    rgb: bytes

    def to_pil(self):  # noqa: ANN201 (a PIL.Image.Image; Pillow is imported lazily)
        from PIL import Image

        return Image.frombytes("RGB", (self.width, self.height), self.rgb)

    def png(self) -> bytes:
        """The pixels as a PNG file (for clients that want a file back)."""
        buffer = io.BytesIO()
        self.to_pil().save(buffer, format="PNG")
        return buffer.getvalue()


def decode_image(data: bytes, *, max_bytes: int, max_pixels: int) -> Pixels:
    """The RGB pixels of an image file's bytes; InvalidImage saying what to do otherwise.

    Refused: more than `max_bytes`, more than `max_pixels` (width × height, as declared
    before anything is decoded), bytes that are not a PNG, JPEG, WebP, GIF or BMP, a
    truncated or corrupt file. An animated image gives its first frame.
    """
    if not data:
        raise InvalidImage("the image is empty; send the bytes of a PNG, JPEG or WebP file")
    if len(data) > max_bytes:
        raise InvalidImage(
            f"the image is {len(data)} bytes, more than the {max_bytes} owl accepts "
            "(OWL_MAX_IMAGE_BYTES); send a smaller image"
        )
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data), formats=FORMATS) as image:
            width, height = image.size
            if width <= 0 or height <= 0:
                raise InvalidImage("the image has no pixels")
            if width * height > max_pixels:
                raise InvalidImage(
                    f"the image is {width}×{height}, more than the {max_pixels} pixels owl "
                    "decodes (OWL_MAX_IMAGE_PIXELS); scale it down first"
                )
            image.seek(0)
            rgb = image.convert("RGB")
    except InvalidImage:
        raise
    except Image.DecompressionBombError:
        # Pillow's own ceiling (far above owl's default) when Image.open reads the header.
        raise InvalidImage(
            f"the image declares more than the {max_pixels} pixels owl decodes "
            "(OWL_MAX_IMAGE_PIXELS); scale it down first"
        ) from None
    except UnidentifiedImageError:
        raise InvalidImage(f"the bytes are not an image owl reads; send {NAMES}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise InvalidImage(f"the image could not be decoded ({err}); send an intact file") from None
    return Pixels(width=rgb.width, height=rgb.height, rgb=rgb.tobytes())


def from_base64(text: str, *, max_bytes: int) -> bytes:
    """The bytes of base64 text (Ollama's `images`, a data: URL's payload), size-checked first."""
    # Base64 is 4 characters for 3 bytes: refuse by length before decoding anything.
    if len(text) > (max_bytes // 3 + 1) * 4 + 4:
        raise InvalidImage(
            f"the image is more than the {max_bytes} bytes owl accepts "
            "(OWL_MAX_IMAGE_BYTES); send a smaller image"
        )
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage("the image is not valid base64; encode the file's bytes") from None


def image_bytes(url: str, *, max_bytes: int, folder: Path | None = None) -> bytes:
    """The bytes an image URL names: a data: URL, or a file: URL (or path) under `folder`.

    http(s) and every other scheme are refused (owl fetches nothing a request names); a
    file outside `folder`, or any file when no folder was allowed, is refused too.
    """
    scheme = urlsplit(url).scheme.lower() if ":" in url[:12] else ""
    if scheme == "data":
        header, _, payload = url.partition(",")
        if not header.lower().endswith(";base64"):
            raise InvalidImage("a data: URL image must be base64 (data:image/png;base64,…)")
        return from_base64(payload, max_bytes=max_bytes)
    if scheme in ("http", "https"):
        raise InvalidImage(
            "owl does not fetch images from URLs (a server that fetches what a request names "
            "can be aimed at the machines behind it); send the image as a data: URL "
            "(data:image/png;base64,…)"
        )
    if scheme in ("file", "") and not url.startswith("//"):
        path = unquote(urlsplit(url).path) if scheme == "file" else url
        return _allowed_file(Path(path), folder=folder, max_bytes=max_bytes)
    raise InvalidImage(f"owl reads images from data: URLs, not {scheme}: URLs")


def _allowed_file(path: Path, *, folder: Path | None, max_bytes: int) -> bytes:
    if folder is None:
        raise InvalidImage(
            "this server reads no image files; send the image as a data: URL, or start it "
            "with --image-folder DIR to allow files under DIR"
        )
    root = folder.resolve()
    try:
        # resolve() follows links: a link inside the folder to a file outside it is outside.
        target = (root / path).resolve(strict=True)
    except (OSError, RuntimeError):
        raise InvalidImage(f"no image file {str(path)!r} under the allowed folder") from None
    if not target.is_relative_to(root) or not target.is_file():
        raise InvalidImage(f"{str(path)!r} is not a file under the allowed folder {root}")
    if target.stat().st_size > max_bytes:
        raise InvalidImage(
            f"{target.name} is more than the {max_bytes} bytes owl accepts (OWL_MAX_IMAGE_BYTES)"
        )
    return target.read_bytes()
