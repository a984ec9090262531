"""Chat with images against a real `owl serve`, with the real `openai` and `ollama` clients:
the tiny SmolVLM pulled with its projector answers an image_url part and Ollama's `images`;
an image counts in the prompt's tokens; what is not a usable image, a URL to fetch, or an
image for a text model is a 400 that says why. And `owl run --image`."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import ollama
import openai
import pytest

from tests.server.conftest import Server
from tests.support.cli import owl
from tests.support.openai_client import make_client
from tests.support.tiny_vlm import (
    IMAGE_SIZE,
    shared_tiny_vlm,
)

pytestmark = pytest.mark.slow  # builds and converts the tiny SmolVLM


def png(colour: tuple[int, int, int]) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def image_part(data: bytes) -> dict:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return {"type": "image_url", "image_url": {"url": url}}


@pytest.fixture(scope="module")
def vlm(server: Server, tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> str:
    made = shared_tiny_vlm(tmp_path_factory.getbasetemp(), bundled_gguf)
    pulled = owl(
        server.home, "pull", str(made.model), "--mmproj", str(made.projector), "--name", "vlm"
    )
    assert pulled.returncode == 0, pulled.stderr
    return "vlm"


def ask(client: openai.OpenAI, content: list | str, model: str = "vlm"):  # noqa: ANN201
    return client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": content}],
        max_tokens=4,
        temperature=0,
    )


def test_an_image_url_part_is_seen_with_the_openai_client(server: Server, vlm: str) -> None:
    client = make_client(server)
    seen = ask(client, [image_part(png((200, 0, 0))), {"type": "text", "text": "What is it?"}])
    text_only = ask(client, "What is it?")
    assert seen.choices[0].finish_reason in ("length", "stop")
    # The image's tokens (two 16-token encodings of a 64x64 image, and their tags).
    assert seen.usage.prompt_tokens - text_only.usage.prompt_tokens >= 32
    again = ask(client, [image_part(png((200, 0, 0))), {"type": "text", "text": "What is it?"}])
    assert again.choices[0].message.content == seen.choices[0].message.content


def test_ollama_images_are_seen_with_the_ollama_client(server: Server, vlm: str) -> None:
    client = ollama.Client(host=server.base)
    answer = client.chat(
        model="vlm",
        messages=[{"role": "user", "content": "What is it?", "images": [png((0, 0, 200))]}],
        options={"temperature": 0, "num_predict": 4},
    )
    plain = client.chat(
        model="vlm",
        messages=[{"role": "user", "content": "What is it?"}],
        options={"temperature": 0, "num_predict": 4},
    )
    assert answer.prompt_eval_count - plain.prompt_eval_count >= 32
    generated = client.generate(
        model="vlm", prompt="What is it?", images=[png((0, 0, 200))], options={"num_predict": 2}
    )
    assert generated.prompt_eval_count == answer.prompt_eval_count


@pytest.mark.parametrize(
    ("part", "words"),
    [
        ({"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}, "not fetch"),
        (image_part(b"not an image at all"), "not an image"),
        ({"type": "image_url", "image_url": {"url": "/etc/passwd"}}, "folder"),
        ({"type": "text", "text": "<__media__> sneaky"}, "may not contain"),
    ],
)
def test_bad_images_are_400s(server: Server, vlm: str, part: dict, words: str) -> None:
    with httpx.Client(base_url=server.base, timeout=120) as http:
        answer = http.post(
            "/v1/chat/completions",
            json={"model": "vlm", "messages": [{"role": "user", "content": [part]}]},
        )
    assert answer.status_code == 400, answer.text
    assert words in answer.json()["error"]["message"]


def test_a_text_model_given_an_image_says_what_to_use(server: Server) -> None:
    with pytest.raises(openai.BadRequestError, match="cannot see images"):
        ask(make_client(server), [image_part(png((1, 2, 3)))], model="smollm2")


def test_owl_run_with_an_image(server: Server, vlm: str, tmp_path: Path) -> None:
    picture = tmp_path / "red.png"
    picture.write_bytes(png((200, 0, 0)))
    ran = owl(server.home, "run", "vlm", "--image", str(picture), "--max-tokens", "3", "Hi")
    assert ran.returncode == 0, ran.stderr
    refused = owl(server.home, "run", "smollm2", "--image", str(picture), "Hi")
    assert refused.returncode != 0 and "cannot see images" in refused.stderr
    assert "Traceback" not in refused.stderr
