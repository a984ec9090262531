"""owl convert PATH_OR_MODEL: a Hugging Face model folder (or a stored one) → a GGUF model."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console

from owl.cli.common import print_json, warn_if_not_clean
from owl.config import load_settings
from owl.formats import human_bytes, human_count
from owl.pull import open_store
from owl.quantize.convert import convert

console = Console(highlight=False)
progress = Console(stderr=True)  # the spinner stays off stdout, which --json owns


class OutType(StrEnum):
    F16 = "f16"
    BF16 = "bf16"
    F32 = "f32"
    Q8_0 = "q8_0"


def convert_command(
    folder: Annotated[
        str,
        typer.Argument(
            help="A Hugging Face model folder (config.json, *.safetensors, tokenizer files), "
            "or the name of one in the store (`owl pull ./folder`).",
            metavar="PATH_OR_MODEL",
        ),
    ],
    outtype: Annotated[
        OutType, typer.Option("--outtype", help="The GGUF's weight type.")
    ] = OutType.F16,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help="Store it under this name (without a tag it gets the outtype: NAME:f16). "
            "Default: the folder's (or stored model's) name.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the stored model's manifest as JSON.")
    ] = False,
) -> None:
    """Convert a Hugging Face safetensors model to GGUF with llama.cpp's own converter.

    The converter is the one of the llama.cpp that owl runs; the first conversion fetches it
    (pip download of llama-cpp-python's sdist) into OWL_HOME/tools.
    """
    config = load_settings()
    store = open_store(config)
    started = time.perf_counter()
    with progress.status("converting", spinner="dots") as spinner:

        def status(message: str) -> None:
            spinner.update(message)

        manifest = convert(
            folder, store=store, settings=config, outtype=outtype.value, name=name, status=status
        )
    if json_output:
        print_json(manifest.model_dump(mode="json"))
    else:
        info = manifest.info
        console.print(
            f"converted [bold]{manifest.display_name}[/bold] "
            f"({info.get('architecture') or '?'}, {human_count(info.get('parameters'))} "
            f"parameters, {info.get('quantization') or outtype.value}, "
            f"{human_bytes(manifest.size)}, {manifest.weights.digest[:19]}) "
            f"in {time.perf_counter() - started:.1f} s"
        )
    warn_if_not_clean(manifest)


def register(app: typer.Typer) -> None:
    """Add `owl convert`."""
    app.command("convert")(convert_command)
