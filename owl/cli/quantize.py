"""owl quantize MODEL --type TYPE: llama.cpp's quantizer, into a new store entry MODEL:TYPE."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from owl.cli.common import print_json
from owl.config import load_settings
from owl.formats import human_bytes
from owl.quantize import find_type, quant_types, quantize
from owl.store import Manifest, open_store, resolve

console = Console(highlight=False, soft_wrap=True)


def quantize_command(
    model: Annotated[str, typer.Argument(help="A GGUF model in the store, e.g. smollm2.")],
    qtype: Annotated[
        str,
        typer.Option(
            "--type",
            "-t",
            help="The quantization type (any case): " + ", ".join(quant_types()) + ".",
            metavar="TYPE",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Store it under this name (default MODEL:type)."),
    ] = None,
    imatrix: Annotated[
        Path | None,
        typer.Option(
            "--imatrix",
            help="An importance matrix made by llama.cpp's llama-imatrix for this model "
            "(required by IQ1/IQ2/IQ3_XXS and Q2_K_S).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print one JSON object with the result.")
    ] = False,
) -> None:
    """Quantize a stored GGUF model with llama.cpp into a new model, MODEL:TYPE, with lineage."""
    config = load_settings()
    store = open_store(config)
    kind = find_type(qtype)
    parent = resolve(model, store=store, settings=config)
    started = time.perf_counter()
    with Progress(
        SpinnerColumn(),
        TextColumn(
            f"quantizing [bold]{parent.display_name}[/bold] ({human_bytes(parent.size)}, "
            f"{parent.info.get('quantization') or '?'}) to [bold]{kind.name}[/bold]"
        ),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tensors"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("quantize", total=None)
        result = quantize(
            parent,
            store=store,
            settings=config,
            qtype=kind.name,
            name=name,
            imatrix=imatrix,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    seconds = time.perf_counter() - started
    _report(result, parent, seconds, json_output=json_output)


def _report(result: Manifest, parent: Manifest, seconds: float, *, json_output: bool) -> None:
    details = result.info.get("quantize", {})
    parameters = result.info.get("parameters")
    bits = round(result.size * 8 / parameters, 2) if parameters else None
    if json_output:
        print_json(
            {
                "name": result.display_name,
                "parent": parent.display_name,
                "type": details.get("type"),
                "size": result.size,
                "bits_per_weight": bits,
                "parameters": parameters,
                "seconds": round(seconds, 2),
                "digest": result.weights.digest,
                "requantized": details.get("requantized"),
                "imatrix": details.get("imatrix"),
            }
        )
    else:
        console.print(
            f"quantized [bold]{result.display_name}[/bold]: {human_bytes(result.size)}"
            + (f", {bits:.2f} bits per weight" if bits is not None else "")
            + f", in {seconds:.1f} s (from {parent.display_name}, {human_bytes(parent.size)})"
        )
    if details.get("requantized"):
        typer.secho(
            f"warning: {parent.display_name} was already quantized ({details.get('from')}), "
            f"so {result.display_name} carries the rounding errors of both; quantize an "
            "f16/bf16 GGUF (`owl convert`) where quality matters, and measure the cost with "
            "`owl eval`",
            err=True,
            fg=typer.colors.YELLOW,
        )
    kind = find_type(details.get("type") or "")
    if kind.imatrix == "recommended" and not details.get("imatrix"):
        typer.secho(
            f"note: {kind.name} loses much more quality without an importance matrix "
            "(--imatrix FILE)",
            err=True,
            fg=typer.colors.YELLOW,
        )


def register(app: typer.Typer) -> None:
    """Add `owl quantize`."""
    app.command("quantize")(quantize_command)
