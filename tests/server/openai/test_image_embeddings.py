"""Image embeddings on /v1/embeddings against a real `owl serve`, with the real `openai`
client: a tiny CLIP pulled into the server's store embeds images (content parts, bare base64)
and texts in one space, as transformers does; bad images and text-only models are 400s."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.server.conftest import Server
from tests.support.cli import owl
from tests.support.tiny_clip import build_tiny_clip, reference_image_vectors, reference_text_vectors
from tests.support.tiny_lora import smollm2_tokenizer

TOLERANCE = 1e-6  # unit float32 vectors, the same ops on the same tensors (see the engine test)


def png(color: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, "PNG")
    return buffer.getvalue()


def part(data: bytes) -> dict:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return {"type": "image_url", "image_url": {"url": url}}


@pytest.fixture(scope="module")
def clip(server: Server, tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    tokenizer = smollm2_tokenizer(tmp_path_factory.getbasetemp(), bundled_gguf)
    folder = build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", tokenizer)
    pulled = owl(server.home, "pull", str(folder), "--name", "clip")
    assert pulled.returncode == 0, pulled.stderr
    return folder


def test_images_and_texts_embed_in_order_with_the_openai_client(
    client: openai.OpenAI, clip: Path
) -> None:
    red, navy = png("red"), png("navy")
    result = client.embeddings.create(
        model="clip",
        input=[part(red), "a red square", {"image": base64.b64encode(navy).decode()}],  # type: ignore[list-item]
    )
    got = np.array([item.embedding for item in result.data])
    pictures = [Image.open(io.BytesIO(data)).convert("RGB") for data in (red, navy)]
    images = reference_image_vectors(clip, pictures)
    text = reference_text_vectors(clip, ["a red square"])
    assert np.abs(got - np.stack([images[0], text[0], images[1]])).max() <= TOLERANCE
    from transformers import AutoTokenizer

    text_tokens = len(AutoTokenizer.from_pretrained(clip)("a red square")["input_ids"])
    # Each image is 16 tokens: a 32x32 crop in 8x8 patches.
    assert result.usage.prompt_tokens == 16 + text_tokens + 16


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, "not fetch"),
        ({"image": base64.b64encode(b"not an image at all").decode()}, "not an image"),
        ({"image": "%%% not base64 %%%"}, "base64"),
        ({"type": "image_url", "image_url": {"url": "/etc/passwd"}}, "folder"),
    ],
)
def test_bad_images_are_400s_that_say_why(
    http: httpx.Client, clip: Path, item: dict, words: str
) -> None:
    answer = http.post("/v1/embeddings", json={"model": "clip", "input": [item]})
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]["message"]


def test_a_text_model_given_an_image_says_which_models_can(http: httpx.Client) -> None:
    answer = http.post("/v1/embeddings", json={"model": "smollm2", "input": [part(png("red"))]})
    assert answer.status_code == 400, answer.text
    assert "embeds text only" in answer.json()["error"]["message"]
