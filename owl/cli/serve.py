"""owl serve: the OpenAI-compatible HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from owl.config import load_settings
from owl.store.lock import LOCK_FILE, read_lock


def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to listen on (OWL_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (OWL_PORT).")] = None,
    ctx: Annotated[
        int | None, typer.Option(help="Context window per model (0 = the model's).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    allow_unsafe: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-unsafe",
            metavar="MODEL",
            help="Serve MODEL although its scan found it unsafe or could not verify it "
            "(experts only; repeat per model; recorded in its manifest).",
        ),
    ] = None,
    locked: Annotated[
        bool,
        typer.Option(
            "--locked", help="Serve only models whose files are exactly what owl.lock pins."
        ),
    ] = False,
    lock_file: Annotated[
        Path, typer.Option("--lock-file", help="The lock file for --locked.")
    ] = Path(LOCK_FILE),
) -> None:
    """Serve the store's models over an OpenAI-compatible API."""
    from owl.server import serve

    lock = read_lock(lock_file) if locked else None  # a missing lock fails before serving
    serve(
        load_settings(host=host, port=port, ctx=ctx, threads=threads),
        allow_unsafe=allow_unsafe or (),
        lock=lock,
    )


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
