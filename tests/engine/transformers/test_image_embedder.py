"""owl's image embedder on tiny random-weight CLIP and DINOv2 folders: transformers' own
vectors for the same images and texts, texts and images in one space for CLIP, DINOv2
images only, and folders of other kinds refused with what to do."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from owl import engine
from owl.config import Settings
from owl.engine import Capability
from owl.engine.images import Pixels, decode_image
from owl.engine.registry import capabilities_of
from owl.engine.transformers.image_embedder import ImageEmbedder
from owl.errors import ContextOverflow, NotEmbeddable
from owl.pull import pull
from owl.store import Store
from tests.support.tiny_clip import (
    PROJECTION,
    build_tiny_clip,
    build_tiny_dinov2,
    reference_image_vectors,
    reference_text_vectors,
)
from tests.support.tiny_lora import smollm2_tokenizer

# float32 vectors of unit length: transformers and owl run the same ops on the same
# tensors, so they agree to the last bits; 1e-6 is a few float32 ulps of 1.0.
TOLERANCE = 1e-6
TEXTS = ["a red square", "the blue sky over the sea"]


def png(color: str, size: tuple[int, int] = (40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def images() -> list[Pixels]:
    return [decode_image(png(c), max_bytes=1 << 20, max_pixels=1 << 20) for c in ("red", "navy")]


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    tokenizer = smollm2_tokenizer(tmp_path_factory.getbasetemp(), bundled_gguf)
    return build_tiny_clip(tmp_path_factory.mktemp("clip") / "tiny-clip", tokenizer)


@pytest.fixture(scope="module")
def dinov2_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_dinov2(tmp_path_factory.mktemp("dinov2") / "tiny-dinov2")


@pytest.fixture(scope="module")
def clip(clip_folder: Path) -> Iterator[ImageEmbedder]:
    loaded = ImageEmbedder(clip_folder, threads=1)
    yield loaded
    loaded.close()


def test_clip_image_vectors_are_transformers_own(
    clip: ImageEmbedder, clip_folder: Path, images: list[Pixels]
) -> None:
    result = clip.embed_images(images)
    expected = reference_image_vectors(clip_folder, [image.to_pil() for image in images])
    assert np.abs(np.array(result.vectors) - expected).max() <= TOLERANCE
    assert clip.dimensions == PROJECTION == len(result.vectors[0])
    assert result.token_counts == [16, 16]  # a 32x32 crop in 8x8 patches


def test_clip_text_vectors_are_transformers_own_in_the_same_space(
    clip: ImageEmbedder, clip_folder: Path, images: list[Pixels]
) -> None:
    texts = clip.embed(TEXTS)
    expected = reference_text_vectors(clip_folder, TEXTS)
    assert np.abs(np.array(texts.vectors) - expected).max() <= TOLERANCE
    assert len(texts.vectors[0]) == len(clip.embed_images(images).vectors[0])
    assert all(count > 1 for count in texts.token_counts)
    assert clip.embed_tokens([[5, 6, 7]]).token_counts == [3]


def test_unnormalised_vectors_keep_their_length(clip: ImageEmbedder, images: list[Pixels]) -> None:
    raw = np.array(clip.embed_images(images, normalize=False).vectors)
    unit = np.array(clip.embed_images(images).vectors)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.abs(raw / norms - unit).max() <= TOLERANCE


def test_a_text_longer_than_the_text_tower_is_refused_or_cut(clip: ImageEmbedder) -> None:
    long = [list(range(10, 10 + clip.n_ctx + 5))]
    with pytest.raises(ContextOverflow, match=f"more than the {clip.n_ctx}"):
        clip.embed_tokens(long)
    cut = clip.embed_tokens(long, truncate=True)
    assert cut.token_counts == [clip.n_ctx]
    assert cut.vectors == clip.embed_tokens([long[0][: clip.n_ctx]]).vectors


def test_dinov2_embeds_images_as_transformers_does_and_refuses_text(
    dinov2_folder: Path, images: list[Pixels]
) -> None:
    dinov2 = ImageEmbedder(dinov2_folder, threads=1)
    try:
        expected = reference_image_vectors(dinov2_folder, [image.to_pil() for image in images])
        got = np.array(dinov2.embed_images(images).vectors)
        assert np.abs(got - expected).max() <= TOLERANCE
        with pytest.raises(NotEmbeddable, match="embeds images only"):
            dinov2.embed(["a text"])
    finally:
        dinov2.close()


def test_a_stored_clip_loads_for_embed_and_a_wav2vec2_does_not(
    clip_folder: Path, store: Store, settings: Settings, tmp_path: Path
) -> None:
    manifest = pull(str(clip_folder), store=store, settings=settings, name="clip")
    assert capabilities_of(manifest, store=store) == {Capability.EMBED}
    loaded = engine.load(manifest, store=store, settings=settings, capability=Capability.EMBED)
    try:
        assert Capability.SEE in loaded.capabilities and loaded.dimensions == PROJECTION
    finally:
        loaded.close()
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text('{"architectures": ["Wav2Vec2ForCTC"]}')
    with pytest.raises(NotEmbeddable, match="Wav2Vec2ForCTC"):
        ImageEmbedder(other)
