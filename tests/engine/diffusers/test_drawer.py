"""owl's drawings against diffusers' own: tiny random-weight SD and SDXL pipelines, pulled into
the store and loaded by engine.load, give the very pixels that the same pipeline used
directly gives for the same seeds (the same code runs on the same CPU threads, so there is
no tolerance to derive: equal). Then the seeds, the progress, the cancellation, the limits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from owl.engine.backend import Capability, Drawer
from owl.engine.drawing import DrawLimits, DrawOptions
from owl.engine.images import Pixels
from owl.errors import EngineError, InvalidParameter, InvalidPrompt
from tests.engine.diffusers.conftest import load_drawer
from tests.support.tiny_diffusion import SCHEDULERS, TINY_SIZE, build_tiny_sd, reference_images

pytestmark = pytest.mark.slow  # each module loads diffusers pipelines

PROMPT = "a cat on the mat"


def _array(image: Pixels) -> np.ndarray:
    return np.frombuffer(image.rgb, np.uint8).reshape(image.height, image.width, 3)


def _same(owl_images: tuple[Pixels, ...], reference: list) -> None:
    assert len(owl_images) == len(reference)
    for mine, theirs in zip(owl_images, reference, strict=True):
        np.testing.assert_array_equal(_array(mine), np.asarray(theirs))


def test_pixels_equal_diffusers_for_the_same_seeds(sd_drawer: Drawer, tiny_sd: Path) -> None:
    drawing = sd_drawer.draw(DrawOptions(prompt=PROMPT, steps=4, seed=7, n=2))
    assert drawing.seeds == (7, 8) and drawing.steps == 4
    assert (drawing.width, drawing.height) == (TINY_SIZE, TINY_SIZE)
    _same(drawing.images, reference_images(tiny_sd, PROMPT, steps=4, seeds=[7, 8]))


def test_size_negative_prompt_and_guidance_reach_the_pipeline(
    sd_drawer: Drawer, tiny_sd: Path
) -> None:
    options = DrawOptions(
        prompt=PROMPT, negative_prompt="the dog", guidance=3.0, width=48, height=32, steps=3, seed=1
    )
    drawing = sd_drawer.draw(options)
    assert (drawing.images[0].width, drawing.images[0].height) == (48, 32)
    reference = reference_images(
        tiny_sd, PROMPT, steps=3, size=(48, 32), seeds=[1], negative_prompt="the dog", guidance=3.0
    )
    _same(drawing.images, reference)
    plain = sd_drawer.draw(DrawOptions(prompt=PROMPT, width=48, height=32, steps=3, seed=1))
    assert plain.images[0].rgb != drawing.images[0].rgb  # the negative prompt changed it


@pytest.mark.parametrize("scheduler", SCHEDULERS[1:])
def test_other_schedulers_equal_diffusers(scheduler: str, tmp_path: Path) -> None:
    folder = build_tiny_sd(tmp_path / "tiny", scheduler=scheduler)
    drawer = load_drawer(folder, tmp_path / "home")
    try:
        drawing = drawer.draw(DrawOptions(prompt=PROMPT, steps=3, seed=11))
    finally:
        drawer.close()
    _same(drawing.images, reference_images(folder, PROMPT, steps=3, seeds=[11]))


def test_sdxl_equals_diffusers(tiny_sdxl: Path, tmp_path: Path) -> None:
    drawer = load_drawer(tiny_sdxl, tmp_path / "home")
    try:
        assert drawer.capabilities == frozenset({Capability.DRAW})
        drawing = drawer.draw(DrawOptions(prompt=PROMPT, steps=3, seed=2, n=2))
    finally:
        drawer.close()
    _same(drawing.images, reference_images(tiny_sdxl, PROMPT, steps=3, seeds=[2, 3]))


def test_the_same_seed_draws_the_same_image(sd_drawer: Drawer) -> None:
    first = sd_drawer.draw(DrawOptions(prompt=PROMPT, steps=2, seed=123))
    again = sd_drawer.draw(DrawOptions(prompt=PROMPT, steps=2, seed=123))
    other = sd_drawer.draw(DrawOptions(prompt=PROMPT, steps=2, seed=124))
    assert first.images == again.images
    assert first.images != other.images
    unseeded = sd_drawer.draw(DrawOptions(prompt=PROMPT, steps=2))
    (seed,) = unseeded.seeds  # a random seed, reported: it draws the same again
    assert sd_drawer.draw(DrawOptions(prompt=PROMPT, steps=2, seed=seed)).images == unseeded.images


def test_progress_reports_every_step_in_order(sd_drawer: Drawer) -> None:
    seen: list[tuple[int, int]] = []
    sd_drawer.draw(
        DrawOptions(prompt=PROMPT, steps=5, seed=0), progress=lambda *step: seen.append(step)
    )
    assert seen == [(step, 5) for step in range(1, 6)]


def test_a_cancelled_drawing_stops_at_its_next_step(sd_drawer: Drawer) -> None:
    seen: list[int] = []
    with pytest.raises(EngineError, match="cancelled"):
        sd_drawer.draw(
            DrawOptions(prompt=PROMPT, steps=50, seed=0),
            progress=lambda step, _steps: seen.append(step),
            cancelled=lambda: len(seen) >= 2,
        )
    assert seen == [1, 2]
    assert sd_drawer.occupancy().busy == 0
    assert len(sd_drawer.draw(DrawOptions(prompt=PROMPT, steps=1, seed=0)).images) == 1


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        (DrawOptions(prompt="  "), InvalidPrompt, "empty"),
        (DrawOptions(prompt=PROMPT, width=30, height=32), InvalidParameter, "multiple of 8"),
        (DrawOptions(prompt=PROMPT, width=32), InvalidParameter, "both"),
        (DrawOptions(prompt=PROMPT, width=4096, height=4096), InvalidParameter, "pixels"),
        (DrawOptions(prompt=PROMPT, steps=0), InvalidParameter, "steps"),
        (DrawOptions(prompt=PROMPT, steps=151), InvalidParameter, "steps"),
        (DrawOptions(prompt=PROMPT, n=5), InvalidParameter, "'n'"),
        (DrawOptions(prompt=PROMPT, seed=-1), InvalidParameter, "seed"),
        (DrawOptions(prompt=PROMPT, guidance=float("nan")), InvalidParameter, "guidance"),
        (DrawOptions(prompt="x" * 4001), InvalidParameter, "4000"),
    ],
)
def test_requests_out_of_range_are_refused_before_drawing(
    sd_drawer: Drawer, options: DrawOptions, error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        sd_drawer.draw(options, progress=lambda *_: pytest.fail("it drew"))


def test_the_models_own_size_is_held_to_the_limits(sd_drawer: Drawer) -> None:
    with pytest.raises(InvalidParameter, match="pixels"):
        sd_drawer.draw(DrawOptions(prompt=PROMPT, steps=1), limits=DrawLimits(max_pixels=512))


def test_model_defaults_stand_for_steps_not_given(tiny_sd: Path, tmp_path: Path) -> None:
    drawer = load_drawer(tiny_sd, tmp_path / "home", parameters={"steps": 2})
    try:
        assert drawer.draw(DrawOptions(prompt=PROMPT, seed=0)).steps == 2
        assert drawer.draw(DrawOptions(prompt=PROMPT, seed=0, steps=3)).steps == 3
    finally:
        drawer.close()
    with pytest.raises(EngineError, match="unloaded"):
        drawer.draw(DrawOptions(prompt=PROMPT, steps=1))
