"""owl draw: text to an image with a Stable Diffusion pipeline (diffusers' layout), offline."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from owl import engine
from owl.config import load_settings
from owl.engine.backend import Drawer
from owl.engine.drawing import (
    Drawing,
    DrawLimits,
    DrawOptions,
    check_options,
    drawing_model,
    parse_size,
)
from owl.engine.images import Pixels
from owl.errors import InvalidImage
from owl.pull import open_store, resolve

errors = Console(stderr=True)
# What Pillow writes, by the output file's suffix.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def draw_command(
    prompt: Annotated[str, typer.Argument(help="What to draw; - reads it from stdin.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The image to write: .png, .jpg or .webp.")
    ],
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="A diffusers pipeline (default: the one stored)."),
    ] = None,
    steps: Annotated[
        int | None, typer.Option("--steps", help="Denoising steps (default: the model's).")
    ] = None,
    size: Annotated[
        str, typer.Option("--size", help="WIDTHxHEIGHT in pixels, multiples of 8, or auto.")
    ] = "auto",
    seed: Annotated[
        int | None, typer.Option("--seed", help="The same seed draws the same image.")
    ] = None,
    count: Annotated[int, typer.Option("--n", help="How many images (OUT-1.png, …).")] = 1,
    negative: Annotated[
        str | None, typer.Option("--negative", help="What the image should not show.")
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option("--guidance", help="How closely to follow the prompt (default: the model's)."),
    ] = None,
    allow_unsafe: Annotated[
        bool,
        typer.Option("--allow-unsafe", help="Load it even though its scan verdict is not clean."),
    ] = False,
) -> None:
    """Draw PROMPT into an image file (Stable Diffusion 1.x, 2.x or SDXL, offline)."""
    image_format = FORMATS.get(output.suffix.lower())
    if image_format is None:
        raise typer.BadParameter(f"cannot write {output.name!r}: name it .png, .jpg or .webp")
    words = sys.stdin.read().strip() if prompt == "-" else prompt
    dimensions = parse_size(size)
    width, height = dimensions if dimensions is not None else (None, None)
    options = DrawOptions(
        prompt=words,
        negative_prompt=negative,
        width=width,
        height=height,
        steps=steps,
        guidance=guidance,
        seed=seed,
        n=count,
    )
    config = load_settings()
    limits = DrawLimits.of(config)
    check_options(options, limits)  # before a model loads
    store = open_store(config)
    name = model or drawing_model(store)
    manifest = resolve(name, store=store, settings=config, pull_missing=True)
    drawer: Drawer = engine.load(  # type: ignore[assignment]  (asked for DRAW)
        manifest,
        store=store,
        settings=config,
        capability=engine.Capability.DRAW,
        allow_unsafe=allow_unsafe,
        by="owl draw --allow-unsafe",
    )
    try:
        drawing = _draw(drawer, options, limits)
    finally:
        drawer.close()
    paths = _paths(output, len(drawing.images))
    for path, image, image_seed in zip(paths, drawing.images, drawing.seeds, strict=True):
        _write(image, path, image_format)
        errors.print(
            f"wrote {path} ({drawing.width}x{drawing.height}, seed {image_seed}, "
            f"{drawing.steps} steps)",
            highlight=False,
        )
    errors.print(f"drew in {drawing.seconds:.1f} s", highlight=False)


def _draw(drawer: Drawer, options: DrawOptions, limits: DrawLimits) -> Drawing:
    with Progress(
        TextColumn("[bold]drawing[/bold]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    ) as bar:
        task = bar.add_task("draw", total=None)

        def progress(step: int, steps: int) -> None:
            bar.update(task, completed=step, total=steps)

        return drawer.draw(options, limits=limits, progress=progress)


def _paths(output: Path, count: int) -> list[Path]:
    """OUT itself for one image; OUT-1, OUT-2, … (same suffix) for several."""
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(1, count + 1)]


def _write(image: Pixels, path: Path, image_format: str) -> None:
    try:
        if image_format == "PNG":
            path.write_bytes(image.png())
        else:
            image.to_pil().save(path, format=image_format)
    except OSError as err:
        raise InvalidImage(f"cannot write {path}: {err.strerror or err}") from None


def register(app: typer.Typer) -> None:
    app.command("draw")(draw_command)
