"""Chat with images through the scheduler, on the tiny SmolVLM stored with its projector:
the prompt holds one run of positions per image, the answer depends on the image and on
nothing else, a text generation beside it is what it is alone, and a text model is refused."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from owl import engine
from owl.config import Settings
from owl.engine import Capability
from owl.engine.images import IMAGE_MARKER, Pixels, decode_image
from owl.engine.model import Delta, Model
from owl.engine.scheduler import MEDIA
from owl.errors import InvalidImage, WrongModelKind
from owl.pull import add_projector, pull
from owl.store import Store
from tests.support.tiny_vlm import (
    IMAGE_SIZE,
    shared_tiny_vlm,
)

pytestmark = pytest.mark.slow  # builds the tiny SmolVLM and runs llama.cpp's converter

ASK = [{"role": "user", "content": IMAGE_MARKER + "What is in the picture?"}]


def image(colour: tuple[int, int, int], *, stripe: bool = False) -> Pixels:
    from PIL import Image, ImageDraw

    picture = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), colour)
    if stripe:
        ImageDraw.Draw(picture).rectangle((0, 0, IMAGE_SIZE // 2, IMAGE_SIZE), fill=(255, 255, 0))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return decode_image(buffer.getvalue(), max_bytes=1 << 20, max_pixels=1 << 20)


@pytest.fixture
def model(
    tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path, store: Store, settings: Settings
) -> Model:
    made = shared_tiny_vlm(tmp_path_factory.getbasetemp(), bundled_gguf)
    stored = pull(str(made.model), store=store, settings=settings, name="vlm")
    stored = add_projector(stored, str(made.projector), store=store, settings=settings)
    loaded = engine.load(
        stored, store=store, settings=settings, capability=Capability.CHAT, slots=2
    )
    yield loaded
    loaded.close()


def answer(model: Model, messages: list, images: list[Pixels] | None = None) -> list[Delta]:
    params = model.sampling(temperature=0, max_tokens=6, logprobs=3)
    if images is None:
        return list(model.chat(messages, params))
    tokens, media = model.chat_media(messages, images)
    return list(model.generate(tokens, params, media=media))


def first_logprobs(deltas: list[Delta]) -> tuple:
    first = next(lp for delta in deltas for lp in delta.logprobs)
    return first.top


def test_an_image_fills_its_positions_and_steers_the_answer(model: Model) -> None:
    assert Capability.SEE in model.capabilities
    red, striped = image((200, 0, 0)), image((0, 0, 200), stripe=True)
    tokens, media = model.chat_media(ASK, [red])
    assert tokens.count(MEDIA) == media[0].n_tokens >= 32  # two 16-token encodings + tags
    assert all(token >= 0 for token in tokens if token != MEDIA)
    once, twice = answer(model, ASK, [red]), answer(model, ASK, [red])
    assert first_logprobs(once) == first_logprobs(twice)  # same image, same distribution
    assert once[-1].usage.prompt_tokens == len(tokens)
    assert first_logprobs(answer(model, ASK, [striped])) != first_logprobs(once)


def test_two_images_take_two_runs(model: Model) -> None:
    two = [{"role": "user", "content": IMAGE_MARKER + IMAGE_MARKER + "Compare them."}]
    tokens, media = model.chat_media(two, [image((0, 200, 0)), image((0, 0, 0))])
    assert tokens.count(MEDIA) == sum(chunks.n_tokens for chunks in media)
    assert answer(model, two, [image((0, 200, 0)), image((0, 0, 0))])[-1].finish_reason


def test_text_beside_and_after_an_image_is_what_it_is_alone(model: Model) -> None:
    # Evaluated whole (cache_prompt=False): a reused prefix moves logits (scheduler.py).
    text = model.chat_tokens([{"role": "user", "content": "Say something."}])
    params = model.sampling(temperature=0, max_tokens=6, logprobs=3)
    alone = list(model.generate(text, params, cache_prompt=False))
    tokens, media = model.chat_media(ASK, [image((10, 10, 10))])
    with_image = model.generate(tokens, params, media=media)
    beside = model.generate(text, params, cache_prompt=False)  # both in the same steps
    same_as_alone(list(beside), alone)
    assert list(with_image)[-1].finish_reason
    same_as_alone(list(model.generate(text, params, cache_prompt=False)), alone)  # its slot


def same_as_alone(deltas: list[Delta], alone: list[Delta]) -> None:
    """The same tokens and text, and log-probabilities within float32 rounding: decoded in
    one batch with another sequence, llama.cpp sums in another order (~1e-9 seen here); a
    cache that held another prompt's or an image's states would move them by whole units."""
    assert [d.text for d in deltas] == [d.text for d in alone]
    got = [lp for d in deltas for lp in d.logprobs]
    want = [lp for d in alone for lp in d.logprobs]
    assert [lp.token for lp in got] == [lp.token for lp in want]
    assert all(abs(a.logprob - b.logprob) < 1e-4 for a, b in zip(got, want, strict=True))


def test_images_the_template_drops_or_a_text_model_are_refused(
    model: Model, shared_model: Model
) -> None:
    with pytest.raises(InvalidImage, match="kept 1 of the 2 images"):
        model.chat_media(ASK, [image((1, 2, 3)), image((3, 2, 1))])
    with pytest.raises(WrongModelKind, match="cannot see images"):
        shared_model.chat_media(ASK, [image((1, 2, 3))])
