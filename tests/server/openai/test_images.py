"""OpenAI's image API against a real `owl serve`, with the real `openai` client: a tiny
random-weight Stable Diffusion pipeline pulled from a folder draws the same pixels as
diffusers itself; url answers are served back by owl; every malformed request is a 400."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest
from PIL import Image

from tests.server.conftest import Server
from tests.support.cli import owl
from tests.support.openai_client import make_client
from tests.support.owl_server import running_server
from tests.support.tiny_diffusion import build_tiny_sd, reference_images

pytestmark = pytest.mark.slow  # the server loads a diffusers pipeline
MODEL = "tiny-sd"
STEPS = 2


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / MODEL)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, folder: Path) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serve-draw")
    pulled = owl(root / "owl-home", "pull", str(folder), "--name", MODEL)
    assert pulled.returncode == 0, pulled.stderr
    with running_server(root, env={"OWL_MAX_DRAW_IMAGES": "2", "OWL_IMAGE_FILES": "2"}) as up:
        yield up


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return make_client(server)


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as raw:
        yield raw


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_b64_images_equal_diffusers_for_the_same_seed(client: openai.OpenAI, folder: Path) -> None:
    result = client.images.generate(
        model=MODEL,
        prompt="a cat",
        size="32x32",
        n=2,
        quality="high",
        style="vivid",
        extra_body={"seed": 7, "steps": STEPS},
    )
    assert len(result.data) == 2 and result.data[0].b64_json
    drawn = [_pixels(base64.b64decode(item.b64_json or "")) for item in result.data]
    expected = reference_images(folder, "a cat", steps=STEPS, seeds=[7, 8])
    for image, reference in zip(drawn, expected, strict=True):
        assert image.shape == (32, 32, 3)
        # The same pipeline, arguments and generators: the same float32 arithmetic, and
        # diffusers' own ×255-and-round to 8 bits, so the same bytes.
        assert np.array_equal(image, np.asarray(reference))
    again = client.images.generate(
        model=MODEL, prompt="a cat", size="32x32", n=2, extra_body={"seed": 7, "steps": STEPS}
    )
    assert [item.b64_json for item in again.data] == [item.b64_json for item in result.data]


def test_url_answers_are_served_by_owl_and_bounded(
    client: openai.OpenAI, http: httpx.Client
) -> None:
    urls = []
    for seed in (1, 2, 3):
        result = client.images.generate(
            model=MODEL,
            prompt="the moon",
            size="32x32",
            response_format="url",
            extra_body={"seed": seed, "steps": 1},
        )
        url = result.data[0].url or ""
        assert url.startswith(http.base_url.scheme + "://127.0.0.1")
        urls.append(url)
    images = [http.get(url) for url in urls]
    assert images[0].status_code == 404  # OWL_IMAGE_FILES=2: the oldest went first
    for answer in images[1:]:
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        assert _pixels(answer.content).shape == (32, 32, 3)
    assert http.get("/v1/images/files/..%2F..%2Fmanifests").status_code == 404


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"prompt": "x", "size": "big"}, "WIDTHxHEIGHT"),
        ({"prompt": "x", "size": "30x30"}, "multiple of 8"),
        ({"prompt": "x", "size": "8192x8192"}, "OWL_MAX_DRAW_PIXELS"),
        ({"prompt": "x", "n": 3}, "OWL_MAX_DRAW_IMAGES"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "steps": 100000}, "OWL_MAX_DRAW_STEPS"),
        ({"prompt": "   "}, "empty"),
        ({"prompt": "x", "response_format": "gif"}, "response_format"),
        ({"prompt": "x", "seed": -1}, "seed"),
        ({"size": "32x32"}, "prompt"),
    ],
)
def test_malformed_requests_are_400s(http: httpx.Client, body: dict, words: str) -> None:
    answer = http.post("/v1/images/generations", json={"model": MODEL, **body})
    assert answer.status_code == 400, answer.text
    assert words in answer.text, answer.text


def test_unknown_models_and_text_models_are_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.images.generate(model="no-such-model", prompt="a cat")
    with pytest.raises(openai.BadRequestError, match="not an image generation"):
        client.images.generate(model="smollm2", prompt="a cat")  # the embedded text model


def test_a_drawing_model_refuses_chat(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="owl draw"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def test_without_a_model_the_one_pipeline_draws(http: httpx.Client) -> None:
    answer = http.post(
        "/v1/images/generations", json={"prompt": "a cat", "size": "32x32", "steps": 1}
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["size"] == "32x32"
