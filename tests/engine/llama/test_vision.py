"""owl.engine.llama.vision on a tiny random-weight SmolVLM (its GGUF and mmproj made by
llama.cpp's converter): an image is its tokens in the prompt (2 × IMAGE_TOKENS), the logits after
it depend on the image and on nothing else (same image, same logits; another, others)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from owl.engine.images import Pixels, decode_image
from owl.engine.llama.context import generation_context
from owl.engine.llama.model import load_model
from owl.engine.llama.vision import MARKER, Projector
from tests.support.tiny_vlm import (
    IMAGE_SIZE,
    IMAGE_TOKENS,
    TinyVlm,
    shared_tiny_vlm,
)

pytestmark = pytest.mark.slow  # builds the tiny SmolVLM and runs llama.cpp's converter


@pytest.fixture(scope="module")
def vlm(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> TinyVlm:
    return shared_tiny_vlm(tmp_path_factory.getbasetemp(), bundled_gguf)


def _image(colour: tuple[int, int, int], *, stripe: bool = False) -> Pixels:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), colour)
    if stripe:
        ImageDraw.Draw(image).rectangle((0, 0, IMAGE_SIZE // 2, IMAGE_SIZE), fill=(255, 255, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return decode_image(buffer.getvalue(), max_bytes=1 << 20, max_pixels=1 << 20)


def _run(
    vlm: TinyVlm, prompt: str, images: list[Pixels], *, encode_first: bool = False
) -> tuple[int, int, np.ndarray]:
    model = load_model(vlm.model)
    projector = Projector(model, vlm.projector, threads=2)
    context = generation_context(model, n_ctx=256, slots=1, batch=128, threads=2, name="vlm")
    try:
        chunks = projector.chunks(prompt, images)
        if encode_first:
            projector.encode(chunks)
        done = projector.prefill(context, chunks, seq=0, n_batch=128)
        chunks.close()
        return done.prompt_tokens, done.image_tokens, context.logits_at(-1).copy()
    finally:
        context.close()
        projector.close()


def test_an_image_is_its_tokens_in_the_prompt_and_moves_the_logits(vlm: TinyVlm) -> None:
    red, striped = _image((200, 0, 0)), _image((0, 0, 200), stripe=True)
    text_only, _, _ = _run(vlm, "User: what is it?\nAssistant:", [])
    one, image_tokens, first = _run(vlm, f"User: {MARKER} what is it?\nAssistant:", [red])
    two, both_tokens, _ = _run(vlm, f"User: {MARKER}{MARKER} what is it?\nAssistant:", [red, red])

    # llama.cpp's idefics3 preprocessing gives a SmolVLM image its one tile and the image
    # as a whole (the global view): IMAGE_TOKENS each, with text tokens between them.
    assert image_tokens == 2 * IMAGE_TOKENS and both_tokens == 2 * image_tokens
    assert one - text_only > image_tokens  # the image's tokens, and the tags around them
    assert two - one > image_tokens
    again = _run(vlm, f"User: {MARKER} what is it?\nAssistant:", [red])[2]
    other = _run(vlm, f"User: {MARKER} what is it?\nAssistant:", [striped])[2]
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_a_prompt_must_have_a_place_for_each_image(vlm: TinyVlm) -> None:
    from owl.errors import InvalidImage

    model = load_model(vlm.model)
    projector = Projector(model, vlm.projector, threads=2)
    try:
        with pytest.raises(InvalidImage, match="1 image place"):
            projector.chunks(f"{MARKER} and no second one", [_image((1, 2, 3))] * 2)
    finally:
        projector.close()


def test_images_encoded_first_prefill_to_the_same_logits(vlm: TinyVlm) -> None:
    # owl encodes a request's images off the engine thread (Projector.encode), then only
    # decodes them there: the same ops on the same inputs as mtmd's own eval.
    prompt = f"User: {MARKER} what is it?{MARKER}\nAssistant:"
    images = [_image((0, 120, 0)), _image((90, 0, 90), stripe=True)]
    direct = _run(vlm, prompt, images)
    encoded = _run(vlm, prompt, images, encode_first=True)
    assert encoded[:2] == direct[:2]
    np.testing.assert_array_equal(encoded[2], direct[2])
