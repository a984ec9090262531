"""owl ps, owl stop: the models a running `owl serve` holds loaded, and unloading one."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from rich.console import Console
from rich.table import Table

from owl.cli.common import print_json
from owl.config import Settings, load_settings
from owl.errors import ModelNotFound, OwlError, ServerUnreachable, Unauthorized
from owl.formats import human_bytes

console = Console()
_TIMEOUT_S = 30.0  # a stop waits for the model's close (its running generations end first)
_FOREVER_S = 100 * 365 * 86400  # Ollama writes ~292 years ahead for "never"

Host = Annotated[str | None, typer.Option(help="The server's address (OWL_HOST).")]
Port = Annotated[int | None, typer.Option(help="The server's port (OWL_PORT).")]


def _headers(settings: Settings) -> dict[str, str]:
    # A server started with OWL_API_KEYS takes any of its keys: send the first one.
    keys = [key.get_secret_value() for key in settings.api_keys]
    if not keys and settings.api_keys_file is not None:
        try:
            text = settings.api_keys_file.expanduser().read_text(encoding="utf-8")
        except OSError:
            text = ""  # the server reports an unreadable keys file; without a key: 401
        keys = [line.split("#", 1)[0].strip() for line in text.splitlines()]
    key = next((key for key in keys if key), None)
    return {"Authorization": f"Bearer {key}"} if key else {}


def _call(settings: Settings, method: str, path: str) -> dict[str, Any]:
    """One request to the server at settings.host:port; its error as an OwlError."""
    base = f"http://{settings.host}:{settings.port}"
    try:
        response = httpx.request(
            method, base + path, headers=_headers(settings), timeout=_TIMEOUT_S
        )
    except httpx.TransportError:
        raise ServerUnreachable(
            f"no owl server at {base}; start one with `owl serve` (or give --host/--port)"
        ) from None
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.is_success and isinstance(body, dict):
        return body
    message = body.get("error") if isinstance(body, dict) else None
    message = message if isinstance(message, str) else f"{base} answered {response.status_code}"
    if response.status_code == 401:
        raise Unauthorized(f"{message}; set OWL_API_KEYS to one of the server's keys")
    if response.status_code == 404:
        raise ModelNotFound(message)
    raise OwlError(message)


def _until(expires_at: str) -> str:
    moment = datetime.fromisoformat(expires_at.replace("Z", "+00:00"))
    seconds = (moment - datetime.now(UTC)).total_seconds()
    if seconds > _FOREVER_S:
        return "forever"
    if seconds < 1:
        return "now"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return "in " + (f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s")


def ps_command(
    host: Host = None,
    port: Port = None,
    as_json: Annotated[bool, typer.Option("--json", help="The server's /api/ps body.")] = False,
) -> None:
    """List the models a running `owl serve` has loaded, and when each unloads."""
    body = _call(load_settings(host=host, port=port), "GET", "/api/ps")
    if as_json:
        print_json(body)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("NAME", "ID", "SIZE", "PROCESSOR", "CONTEXT", "UNTIL"):
        table.add_column(column)
    for model in body.get("models", []):
        table.add_row(
            model["name"],
            model["digest"][:12],
            human_bytes(model["size"]),
            "100% CPU",
            str(model.get("context_length", "")),
            _until(model["expires_at"]),
        )
    console.print(table)


def stop_command(
    model: Annotated[str, typer.Argument(help="A loaded model (`owl ps` lists them).")],
    host: Host = None,
    port: Port = None,
) -> None:
    """Unload a model from a running `owl serve`, or as soon as its requests end."""
    body = _call(load_settings(host=host, port=port), "DELETE", f"/api/ps/{quote(model)}")
    for name in body.get("unloaded", []):
        console.print(f"unloaded {name}")
    for name in body.get("unloading", []):
        console.print(f"{name} is answering requests; it unloads as soon as they end")


def register(app: typer.Typer) -> None:
    app.command("ps")(ps_command)
    app.command("stop")(stop_command)
