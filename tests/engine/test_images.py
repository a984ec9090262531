"""owl/engine/images.py: untrusted images to RGB pixels, under limits, from allowed places only."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from owl.engine.images import decode_image, from_base64, image_bytes
from owl.errors import InvalidImage

LIMITS = {"max_bytes": 1 << 20, "max_pixels": 256 * 256}


def _png(size: tuple[int, int] = (4, 3), color: tuple[int, int, int] = (10, 20, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _noise_png() -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (32, 32), bytes(range(256)) * 12).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _bomb_header(width: int, height: int) -> bytes:
    """A PNG that declares width × height pixels in a few dozen bytes (no pixel data needed)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b""))


def test_a_png_becomes_its_rgb_pixels() -> None:
    pixels = decode_image(_png((4, 3)), **LIMITS)
    assert (pixels.width, pixels.height) == (4, 3)
    assert pixels.rgb == bytes([10, 20, 30]) * 12
    assert decode_image(pixels.png(), **LIMITS) == pixels  # the PNG round trip is lossless


def test_a_palette_image_with_alpha_becomes_rgb() -> None:
    buffer = io.BytesIO()
    Image.new("RGBA", (2, 2), (255, 0, 0, 128)).save(buffer, format="PNG")
    pixels = decode_image(buffer.getvalue(), **LIMITS)
    assert len(pixels.rgb) == 2 * 2 * 3


def test_an_animated_gif_gives_its_first_frame() -> None:
    frames = [Image.new("RGB", (3, 3), color) for color in ((255, 0, 0), (0, 0, 255))]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:])
    pixels = decode_image(buffer.getvalue(), **LIMITS)
    red, green, blue = pixels.rgb[:3]
    assert red > 200 and blue < 50


@pytest.mark.parametrize("side", [1000, 100_000])  # over owl's limit; over Pillow's own too
def test_a_decompression_bomb_is_refused_by_its_declared_size(side: int) -> None:
    with pytest.raises(InvalidImage, match="pixels owl decodes.*OWL_MAX_IMAGE_PIXELS"):
        decode_image(_bomb_header(side, side), **LIMITS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"hello, not an image", "not an image owl reads"),
        (
            _noise_png()[: len(_noise_png()) // 2],
            "could not be decoded",
        ),  # truncated inside the pixel data
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "not an image owl reads"),  # EPS would run Ghostscript
    ],
)
def test_bytes_that_are_not_a_usable_image_are_refused(data: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        decode_image(data, **LIMITS)


def test_too_large_a_file_is_refused_before_it_is_decoded() -> None:
    with pytest.raises(InvalidImage, match="OWL_MAX_IMAGE_BYTES"):
        decode_image(_png(), max_bytes=10, max_pixels=1 << 20)


def test_base64_is_refused_by_its_length_before_it_is_decoded() -> None:
    with pytest.raises(InvalidImage, match="OWL_MAX_IMAGE_BYTES"):
        from_base64("A" * 1000, max_bytes=100)
    with pytest.raises(InvalidImage, match="not valid base64"):
        from_base64("not base64!", max_bytes=100)


def test_a_data_url_gives_its_bytes() -> None:
    png = _png()
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    assert image_bytes(url, max_bytes=1 << 20) == png
    with pytest.raises(InvalidImage, match="must be base64"):
        image_bytes("data:image/png,rawbytes", max_bytes=1 << 20)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/a.png", "https://example.com/a.png", "HTTP://169.254.169.254/"]
)
def test_http_urls_are_never_fetched(url: str) -> None:
    with pytest.raises(InvalidImage, match="does not fetch images from URLs"):
        image_bytes(url, max_bytes=1 << 20)


def test_other_schemes_are_refused() -> None:
    with pytest.raises(InvalidImage, match="not ftp: URLs"):
        image_bytes("ftp://host/a.png", max_bytes=1 << 20)


def test_files_are_read_only_under_the_allowed_folder(tmp_path: Path) -> None:
    allowed = tmp_path / "images"
    allowed.mkdir()
    (allowed / "a.png").write_bytes(_png())
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png())
    (allowed / "link.png").symlink_to(secret)
    with pytest.raises(InvalidImage, match="--image-folder"):
        image_bytes(str(allowed / "a.png"), max_bytes=1 << 20)  # no folder allowed at all
    assert image_bytes("a.png", max_bytes=1 << 20, folder=allowed) == _png()
    assert image_bytes(f"file://{allowed / 'a.png'}", max_bytes=1 << 20, folder=allowed)
    for escape in ("../secret.png", str(secret), "link.png", f"file://{secret}"):
        with pytest.raises(InvalidImage, match="not a file under the allowed folder"):
            image_bytes(escape, max_bytes=1 << 20, folder=allowed)
    with pytest.raises(InvalidImage, match="no image file"):
        image_bytes("missing.png", max_bytes=1 << 20, folder=allowed)
