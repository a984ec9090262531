"""owl ui: open the web UI that `owl serve` serves, in the browser."""

from __future__ import annotations

import webbrowser
from typing import Annotated

import typer

from owl.config import load_settings


def ui_command(
    host: Annotated[str | None, typer.Option(help="Where owl serve listens (OWL_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Its port (OWL_PORT).")] = None,
) -> None:
    """Open the web UI of a running `owl serve` in the browser."""
    settings = load_settings(host=host, port=port)
    # A server on every address (0.0.0.0, ::) is reached on this machine at loopback.
    shown = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    if ":" in shown:
        shown = f"[{shown}]"
    url = f"http://{shown}:{settings.port}/"
    typer.echo(f"owl UI: {url}  (start the server with `owl serve` if it does not answer)")
    if not webbrowser.open(url):
        typer.echo("no browser found here; open the address above in one")


def register(app: typer.Typer) -> None:
    app.command("ui")(ui_command)
