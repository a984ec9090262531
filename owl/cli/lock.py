"""owl lock | bom: pin a project's models to their bytes, and say what they are."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from owl.config import load_settings
from owl.pull import open_store, register_embedded
from owl.store import Manifest, Store, parse_name
from owl.store.lock import LOCK_FILE, Lock, locked_model, read_lock, write_lock

console = Console()


def _manifests(store: Store, names: list[str]) -> list[Manifest]:
    return [store.get(parse_name(name)) for name in names]


def lock_command(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            help="Models to pin (default: those already in the lock, else every stored model)."
        ),
    ] = None,
    lock_file: Annotated[Path, typer.Option("--file", "-f", help="The lock file.")] = Path(
        LOCK_FILE
    ),
) -> None:
    """Write owl.lock: each model pinned to its files' digests and its source."""
    config = load_settings()
    store = open_store(config)
    register_embedded(store, config)
    lock = read_lock(lock_file) if lock_file.exists() else Lock()
    names = models or list(lock.models) or [manifest.display_name for manifest in store.list()]
    for manifest in _manifests(store, names):
        previous = lock.models.get(manifest.display_name)
        pinned = locked_model(manifest)
        lock.models[manifest.display_name] = pinned
        change = (
            "pinned"
            if previous is None
            else "unchanged"
            if previous.digests() == pinned.digests()
            else "re-pinned"
        )
        console.print(
            f"{change} [bold]{manifest.display_name}[/bold] {manifest.weights.digest[:19]}",
            highlight=False,
        )
    write_lock(lock_file, lock)
    console.print(f"wrote {lock_file} ({len(lock.models)} models)", highlight=False)


def bom_command(
    models: Annotated[
        list[str] | None, typer.Argument(help="Models to list (default: every stored model).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Export a CycloneDX 1.6 ML-BOM (JSON) of the models: hashes, licenses, lineage, scans."""
    from owl.licenses.bom import bom_json

    config = load_settings()
    store = open_store(config)
    register_embedded(store, config)
    manifests = _manifests(store, models) if models else store.list()
    document = bom_json(manifests)
    if output is None:
        print(document)
        return
    output.write_text(document + "\n", encoding="utf-8")
    console.print(f"wrote {output} ({len(manifests)} models)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("lock")(lock_command)
    app.command("bom")(bom_command)
