"""owl export ADAPTER --merge: a LoRA adapter merged into its base → a full model in the store."""

from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.console import Console

from owl.cli.common import print_json, warn_if_not_clean
from owl.config import load_settings
from owl.formats import human_bytes
from owl.pull import open_store, resolve

console = Console(highlight=False)
progress = Console(stderr=True)  # the spinner stays off stdout, which --json owns


def export_command(
    adapter: Annotated[str, typer.Argument(help="A LoRA adapter in the store (owl tune's).")],
    merge: Annotated[
        bool,
        typer.Option("--merge", help="Merge the adapter into its base (required for now)."),
    ] = False,
    quantize: Annotated[
        str | None,
        typer.Option(
            "--quantize", "-q", help="Quantize the merged model too, e.g. Q4_K_M (`owl quantize`)."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            "-n",
            help="Store it under this name (without a tag: NAME:f16, or NAME:<type> with "
            "--quantize). Default: ADAPTER-merged.",
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the stored model's manifest as JSON.")
    ] = False,
) -> None:
    """Merge a LoRA adapter into its base model: a full model, stored with its lineage."""
    from owl.tune.merge import merge as merge_adapter

    if not merge:
        raise typer.BadParameter(
            "owl export writes merged models only: add --merge (an adapter already runs "
            f"unmerged: `owl run {adapter}`)"
        )
    config = load_settings()
    store = open_store(config)
    manifest = resolve(adapter, store=store, settings=config)
    started = time.perf_counter()
    with progress.status("merging", spinner="dots") as spinner:
        merged = merge_adapter(
            manifest,
            store=store,
            settings=config,
            name=name,
            quantize=quantize,
            status=spinner.update,
        )
    if json_output:
        print_json(merged.model_dump(mode="json"))
    else:
        parents = ", ".join(f"{p.name} ({p.relation})" for p in merged.parents)
        console.print(
            f"exported [bold]{merged.display_name}[/bold] ({merged.info.get('quantization')}, "
            f"{human_bytes(merged.size)}, from {parents}) "
            f"in {time.perf_counter() - started:.1f} s"
        )
    warn_if_not_clean(merged)


def register(app: typer.Typer) -> None:
    """Add `owl export`."""
    app.command("export")(export_command)
