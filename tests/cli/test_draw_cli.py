"""owl draw as a user runs it: a tiny random-weight Stable Diffusion pipeline pulled from a
folder, listed with capability draw, drawing the same PNG bytes twice for one seed; refusals
as one line with exit 1."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.support.cli import owl
from tests.support.tiny_diffusion import build_tiny_sd, reference_images

pytestmark = pytest.mark.slow  # each command loads a diffusers pipeline in its process


@pytest.fixture(scope="module")
def pulled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline's folder, pulled once through `owl pull` into the module's OWL_HOME
    (`home`): drawing reads the store and changes nothing in it."""
    root = tmp_path_factory.mktemp("draw")
    folder = build_tiny_sd(root / "tiny-sd")
    result = owl(root / "owl-home", "pull", str(folder), "--name", "tiny-sd")
    assert result.returncode == 0, result.stderr
    return folder


@pytest.fixture
def home(pulled: Path) -> Path:
    return pulled.parent / "owl-home"


def test_list_show_and_draw_the_same_bytes_for_one_seed(
    home: Path, pulled: Path, tmp_path: Path
) -> None:
    shown = owl(home, "show", "tiny-sd").stdout
    assert re.search(r"capabilities\s+draw\b", shown), shown
    listed = owl(home, "list")
    assert re.search(r"tiny-sd\s+\S+ \S+\s+diffusers", listed.stdout), listed.stdout
    args = ("draw", "a cat", "--model", "tiny-sd", "--size", "32x32", "--steps", "2")
    first, second = tmp_path / "one.png", tmp_path / "two.png"
    for out in (first, second):
        drawn = owl(home, *args, "--seed", "5", "-o", str(out))
        assert drawn.returncode == 0, drawn.stderr
        assert "seed 5" in drawn.stderr
    assert first.read_bytes() == second.read_bytes()
    pixels = np.asarray(Image.open(io.BytesIO(first.read_bytes())).convert("RGB"))
    expected = reference_images(pulled, "a cat", steps=2, seeds=[5])[0]
    assert np.array_equal(pixels, np.asarray(expected))


def test_several_images_negative_prompt_and_guidance(home: Path, tmp_path: Path) -> None:
    out = tmp_path / "many.png"
    drawn = owl(
        home, "draw", "the sea", "-o", str(out), "--n", "2", "--steps", "1",
        "--negative", "boats", "--guidance", "3", "--seed", "1", "--size", "32x32",
    )  # fmt: skip
    assert drawn.returncode == 0, drawn.stderr
    one, two = (tmp_path / "many-1.png"), (tmp_path / "many-2.png")
    assert one.is_file() and two.is_file() and one.read_bytes() != two.read_bytes()


def test_refusals_are_one_line(home: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "x.png")
    for args, words in [
        (("draw", "x", "-o", out, "--size", "31x32"), "multiple of 8"),
        (("draw", "x", "-o", out, "--n", "99"), "OWL_MAX_DRAW_IMAGES"),
        (("draw", "x", "-o", out, "--steps", "5000"), "OWL_MAX_DRAW_STEPS"),
        (("draw", "x", "-o", str(tmp_path / "x.gif")), "name it .png"),
        (("draw", "x", "-o", out, "--model", "smollm2"), "not an image generation"),
        (("run", "tiny-sd", "hi"), "owl draw"),
    ]:
        result = owl(home, *args)
        assert result.returncode != 0 and words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
