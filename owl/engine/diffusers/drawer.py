"""Text to images with a Stable Diffusion pipeline (1.x, 2.x, SDXL) in diffusers' layout.

Drawing is diffusers' own: owl passes only what its caller set (the steps, the guidance,
the negative prompt) and the pipeline's defaults stand for the rest, so the pixels equal
those of the same pipeline used directly with the same settings and generators. Each
image has its own CPU random generator seeded seed + i (owl.engine.drawing): the starting
noise is the same on every device.

One drawing runs at a time per pipeline (torch spreads one over the threads already);
others wait their turn. diffusers' step callback reports progress and is where a
cancelled drawing (the client left, the model is unloading) stops.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from owl.engine.backend import Capability, Occupancy
from owl.engine.diffusers.pipeline import load_pipeline
from owl.engine.drawing import SEEDS, Drawing, DrawLimits, DrawOptions, check_options, check_size
from owl.engine.images import Pixels
from owl.errors import EngineError, InvalidParameter

# What diffusers' Stable Diffusion pipelines take when no step count is given.
PIPELINE_STEPS = 50


class _Stopped(Exception):
    """Raised in diffusers' step callback to end a cancelled drawing there."""


class DiffusersDrawer:
    """A diffusers pipeline folder (model_index.json, unet/, vae/, text_encoder/, …) that
    draws images from text.

    `defaults` (the manifest's parameters) may set "steps" and "guidance_scale" for a
    model made for other ones (sd-turbo: 1 step, no guidance). `threads`: torch's CPU
    threads (process-wide).
    """

    capabilities = frozenset({Capability.DRAW})

    def __init__(
        self,
        folder: Path,
        *,
        name: str = "",
        threads: int | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> None:
        self.name = name or folder.name
        loaded = load_pipeline(folder, name=self.name, threads=threads)
        self._pipeline: Any = loaded.pipeline
        self.pipeline_class = loaded.index.pipeline
        self.device = loaded.device
        self.default_size = loaded.default_size
        self.memory_bytes = loaded.memory_bytes
        self.n_ctx = loaded.prompt_tokens
        self.defaults = dict(defaults or {})
        self._run = threading.Lock()  # one drawing at a time
        self._state = threading.Lock()
        self._calls = 0  # drawings running or waiting for their turn
        self._cancel = threading.Event()

    def occupancy(self) -> Occupancy:
        with self._state:
            calls = self._calls
        return Occupancy(1, min(calls, 1), max(calls - 1, 0))

    def draw(
        self,
        options: DrawOptions,
        *,
        limits: DrawLimits | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> Drawing:
        """The images `options` ask for: InvalidPrompt/InvalidParameter for options out of
        `limits`, EngineError when cancelled, unloaded or failing in diffusers."""
        limits = limits or DrawLimits()
        check_options(options, limits)
        width, height = (
            (options.width, options.height)
            if options.width is not None and options.height is not None
            else self.default_size
        )
        check_size(width, height, limits)  # the model's own size too, against this budget
        steps = options.steps or self._default("steps", int) or PIPELINE_STEPS
        if not 1 <= steps <= limits.max_steps:
            raise InvalidParameter(param="steps", reason=f"must be at most {limits.max_steps}")
        guidance = options.guidance
        if guidance is None:
            guidance = self._default("guidance_scale", float)
        first = options.seed if options.seed is not None else secrets.randbelow(SEEDS)
        seeds = tuple((first + offset) % SEEDS for offset in range(options.n))
        arguments: dict[str, Any] = {
            "prompt": options.prompt,
            "negative_prompt": options.negative_prompt or None,
            "num_inference_steps": steps,
            "width": width,
            "height": height,
            "num_images_per_prompt": options.n,
        }
        if guidance is not None:
            arguments["guidance_scale"] = guidance
        with self._state:
            self._calls += 1
        try:
            with self._run:
                started = time.perf_counter()
                images = self._drawn(arguments, seeds, steps, progress, cancelled)
                seconds = time.perf_counter() - started
        finally:
            with self._state:
                self._calls -= 1
        return Drawing(
            images=images,
            seeds=seeds,
            width=width,
            height=height,
            steps=steps,
            seconds=seconds,
        )

    def _default(self, key: str, kind: type) -> Any:
        value = self.defaults.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return kind(value)
        return None

    def _drawn(
        self,
        arguments: dict[str, Any],
        seeds: tuple[int, ...],
        steps: int,
        progress: Callable[[int, int], None] | None,
        cancelled: Callable[[], bool] | None,
    ) -> tuple[Pixels, ...]:
        import numpy as np
        import torch

        pipeline = self._pipeline
        if pipeline is None:
            raise EngineError(f"'{self.name}' was unloaded; load it again")

        def step(_pipe: Any, index: int, _timestep: Any, tensors: dict[str, Any]) -> dict:
            if self._cancel.is_set() or (cancelled is not None and cancelled()):
                raise _Stopped()
            if progress is not None:
                progress(min(index + 1, steps), steps)
            return tensors

        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        try:
            with torch.inference_mode():
                result = pipeline(
                    **arguments,
                    generator=generators,
                    output_type="np",
                    callback_on_step_end=step,
                )
        except _Stopped:
            reason = "is unloading" if self._cancel.is_set() else "was cancelled"
            raise EngineError(f"the drawing stopped: '{self.name}' {reason}") from None
        except ValueError as err:  # the pipeline's own checks of its arguments
            raise InvalidParameter(param="request", reason=str(err)[:300]) from None
        except RuntimeError as err:
            raise EngineError(f"diffusers could not draw: {str(err)[:300]}") from None
        # diffusers' own conversion to 8-bit (numpy_to_pil): ×255, rounded.
        pixels = (np.asarray(result.images) * 255).round().astype(np.uint8)
        return tuple(
            Pixels(width=image.shape[1], height=image.shape[0], rgb=image.tobytes())
            for image in pixels
        )

    def close(self, *, cancel: bool = False) -> None:
        """Free the pipeline, after the drawing under way ends (with `cancel`, at its next
        step, with EngineError). Drawings still waiting then get EngineError."""
        if cancel:
            self._cancel.set()
        with self._run:
            pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None and self.device == "cuda":
            import torch

            del pipeline
            torch.cuda.empty_cache()
