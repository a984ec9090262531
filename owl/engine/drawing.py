"""Text to images, whatever draws them: what a drawing is asked for, its limits, its result.

The CLI (`owl draw`) and the server (POST /v1/images/generations) build the same
DrawOptions and check them against the same DrawLimits before a model is touched: sizes in
multiples of 8 within a pixel budget, steps and images per request within their caps, a
prompt of bounded length. A backend (owl/engine/diffusers) takes them and gives a Drawing.

Seeds make drawings repeatable: image i of a request with seed S is drawn from its own
random generator seeded S + i, so the same seed (and model, size, steps, guidance, n) gives
the same pixels. Image i of a batch starts from the noise a drawing of one image with seed
S + i starts from; a batch's arithmetic may round differently, so its pixels can differ from
that one's by a level or so.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from owl.config import Settings
from owl.engine.images import Pixels
from owl.errors import InvalidParameter, InvalidPrompt
from owl.store import Store

SIZE_STEP = 8  # Stable Diffusion's VAE works in 8×8 pixel cells
MIN_SIDE = SIZE_STEP
MAX_SIDE = 8192
SEEDS = 1 << 32  # seeds are 0 … 2³²−1, as most image tools show them
MAX_PROMPT_CHARS = 4000  # OpenAI's limit for dall-e-3 prompts
MAX_GUIDANCE = 50.0
_SIZE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")


@dataclass(frozen=True)
class DrawLimits:
    """What one request may ask for: pixels per image, denoising steps, images."""

    max_pixels: int = 1536 * 1536
    max_steps: int = 150
    max_images: int = 4
    max_prompt_chars: int = MAX_PROMPT_CHARS

    @classmethod
    def of(cls, settings: Settings) -> DrawLimits:
        """The limits OWL_MAX_DRAW_PIXELS, OWL_MAX_DRAW_STEPS and OWL_MAX_DRAW_IMAGES set."""
        return cls(
            max_pixels=settings.max_draw_pixels,
            max_steps=settings.max_draw_steps,
            max_images=settings.max_draw_images,
        )


@dataclass(frozen=True, kw_only=True)
class DrawOptions:
    """A drawing asked for. None: the model's own (its size, the pipeline's steps and
    guidance), or a random seed, which the Drawing reports."""

    prompt: str
    negative_prompt: str | None = None
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    n: int = 1


@dataclass(frozen=True)
class Drawing:
    """The images drawn, the seed of each, and how they were drawn."""

    images: tuple[Pixels, ...]
    seeds: tuple[int, ...]
    width: int
    height: int
    steps: int
    seconds: float


def parse_size(text: str) -> tuple[int, int] | None:
    """ "WIDTHxHEIGHT" (e.g. "512x768") → (512, 768); "auto" or "" → None (the model's own).
    InvalidParameter for anything else; the limits are checked by check_options."""
    if text.strip().lower() in ("", "auto"):
        return None
    match = _SIZE.match(text)
    if match is None:
        raise InvalidParameter(
            param="size",
            reason=f"{text[:40]!r} is not WIDTHxHEIGHT in pixels, such as 512x512 (or auto)",
        )
    return int(match.group(1)), int(match.group(2))


def check_options(options: DrawOptions, limits: DrawLimits) -> None:
    """InvalidPrompt or InvalidParameter (both 400s) naming what is out of range."""
    prompt = options.prompt
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidPrompt("the prompt is empty; say what to draw")
    for field, text in (("prompt", prompt), ("negative_prompt", options.negative_prompt or "")):
        if len(text) > limits.max_prompt_chars:
            raise InvalidParameter(
                param=field,
                reason=f"{len(text)} characters; send at most {limits.max_prompt_chars}",
            )
    if options.width is not None or options.height is not None:
        check_size(options.width, options.height, limits)
    if options.steps is not None and not 1 <= options.steps <= limits.max_steps:
        raise InvalidParameter(
            param="steps", reason=f"must be between 1 and {limits.max_steps} (OWL_MAX_DRAW_STEPS)"
        )
    if not 1 <= options.n <= limits.max_images:
        raise InvalidParameter(
            param="n",
            reason=f"must be between 1 and {limits.max_images} images (OWL_MAX_DRAW_IMAGES)",
        )
    if options.seed is not None and not 0 <= options.seed < SEEDS:
        raise InvalidParameter(param="seed", reason=f"must be between 0 and {SEEDS - 1}")
    guidance = options.guidance
    if guidance is not None and not (math.isfinite(guidance) and 0 <= guidance <= MAX_GUIDANCE):
        raise InvalidParameter(
            param="guidance_scale", reason=f"must be between 0 and {MAX_GUIDANCE:g}"
        )


def check_size(width: int | None, height: int | None, limits: DrawLimits) -> None:
    """Both sides given, multiples of 8, and within the pixel budget; InvalidParameter else."""
    if width is None or height is None:
        raise InvalidParameter(param="size", reason="give both the width and the height")
    for side in (width, height):
        if not MIN_SIDE <= side <= MAX_SIDE or side % SIZE_STEP:
            raise InvalidParameter(
                param="size",
                reason=f"{width}x{height}: each side must be a multiple of {SIZE_STEP} "
                f"between {MIN_SIDE} and {MAX_SIDE} pixels",
            )
    if width * height > limits.max_pixels:
        raise InvalidParameter(
            param="size",
            reason=f"{width}x{height} is {width * height} pixels, more than the "
            f"{limits.max_pixels} this owl draws (OWL_MAX_DRAW_PIXELS); ask for a smaller image",
        )


def drawing_model(store: Store) -> str:
    """The model to draw with when none is named: the one diffusers pipeline in the store.
    InvalidParameter (param "model") when there is none, or more than one to choose from."""
    names = [m.display_name for m in store.list() if m.format == "diffusers"]
    if len(names) == 1:
        return names[0]
    if not names:
        raise InvalidParameter(
            param="model",
            reason="no image generation model is stored: pull a Stable Diffusion pipeline in "
            "diffusers' layout (`owl pull ./folder`, the folder with model_index.json)",
        )
    raise InvalidParameter(
        param="model", reason=f"name the model to draw with: one of {', '.join(names[:8])}"
    )
