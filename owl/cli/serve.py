"""owl serve: the OpenAI-compatible HTTP API."""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Annotated

import typer
from pydantic import SecretStr

from owl.cli.common import CacheTypeK, CacheTypeV
from owl.config import load_settings
from owl.errors import ConfigError
from owl.store.lock import LOCK_FILE, read_lock


def serve_command(
    host: Annotated[str | None, typer.Option(help="Address to listen on (OWL_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (OWL_PORT).")] = None,
    ctx: Annotated[
        int | None, typer.Option(help="Context window per model (0 = the model's).")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default: all cores).")] = None,
    cache_type_k: CacheTypeK = None,
    cache_type_v: CacheTypeV = None,
    parallel: Annotated[
        int | None, typer.Option(help="Generations batched at once per model (OWL_PARALLEL).")
    ] = None,
    api_key: Annotated[
        list[str] | None,
        typer.Option(
            "--api-key",
            metavar="KEY",
            help="Require this key (repeatable; adds to OWL_API_KEYS). Other users of the "
            "machine can see flags: prefer OWL_API_KEYS or OWL_API_KEYS_FILE.",
        ),
    ] = None,
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            metavar="ORIGIN",
            help="Let web pages from ORIGIN call the API (repeatable; adds to "
            "OWL_CORS_ORIGINS; '*' for any).",
        ),
    ] = None,
    max_tokens: Annotated[
        int | None, typer.Option(help="Most tokens one request may generate (OWL_MAX_TOKENS).")
    ] = None,
    max_queue: Annotated[
        int | None,
        typer.Option(help="Requests that may wait for a busy model; more get 429 (OWL_MAX_QUEUE)."),
    ] = None,
    max_body: Annotated[
        int | None, typer.Option(help="Largest request body in bytes (OWL_MAX_BODY).")
    ] = None,
    allow_unsafe: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-unsafe",
            metavar="MODEL",
            help="Serve MODEL although its scan found it unsafe or could not verify it "
            "(experts only; repeat per model; recorded in its manifest).",
        ),
    ] = None,
    allow_private_sources: Annotated[
        bool,
        typer.Option(
            "--allow-private-sources",
            help="Let /api/pull fetch from loopback and private-network hosts (a LAN mirror; "
            "OWL_ALLOWED_SOURCES=private). Off: a client cannot make the server probe them.",
        ),
    ] = False,
    max_pulls: Annotated[
        int | None, typer.Option(help="Pulls run at once; more get 429 (OWL_MAX_PULLS).")
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
    no_ui: Annotated[
        bool, typer.Option("--no-ui", help="Do not serve the web UI at / (OWL_UI=false).")
    ] = False,
    image_folder: Annotated[
        Path | None,
        typer.Option(
            "--image-folder",
            help="A folder whose files requests may name as images (file: URLs, paths); "
            "without it, images come as data: URLs or base64 only (OWL_IMAGE_FOLDER).",
        ),
    ] = None,
    docs_folder: Annotated[
        Path | None,
        typer.Option(
            "--docs-folder",
            help="A folder clients may index documents from (POST /v1/documents/NAME, the "
            "UI's Documents page); without it the server reads no folders (OWL_DOCS_FOLDER).",
        ),
    ] = None,
) -> None:
    """Serve the store's models over an OpenAI-compatible API."""
    from owl.server.app import serve

    lock = read_lock(lock_file) if locked else None  # a missing lock fails before serving
    settings = load_settings(
        host=host,
        port=port,
        ctx=ctx,
        threads=threads,
        cache_type_k=cache_type_k,
        cache_type_v=cache_type_v,
        parallel=parallel,
        max_tokens=max_tokens,
        max_queue=max_queue,
        max_body=max_body,
        max_pulls=max_pulls,
        ui=False if no_ui else None,
        image_folder=image_folder,
        docs_folder=docs_folder,
    )
    _check_can_listen(settings.host, settings.port)
    # Repeatable flags add to what the environment gives, rather than replace it.
    settings = settings.model_copy(
        update={
            "api_keys": [*settings.api_keys, *(SecretStr(key) for key in api_key or ())],
            "cors_origins": [*settings.cors_origins, *(cors_origin or ())],
            "allowed_sources": [
                *settings.allowed_sources,
                *(["private"] if allow_private_sources else []),
            ],
        }
    )
    serve(
        settings,
        allow_unsafe=allow_unsafe or (),
        lock=lock,
    )


def _check_can_listen(host: str, port: int) -> None:
    """ConfigError with a hint now if uvicorn could not listen: it would only log and exit 3.

    Binds each address as asyncio's create_server does (SO_REUSEADDR: a port in TIME_WAIT
    is free), then lets go; a server that takes the port in between still fails in uvicorn.
    """
    if port == 0:  # any free port
        return
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as err:
        raise ConfigError(
            f"cannot listen on --host {host!r}: {err.strerror}; give an address of this "
            "machine, e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every network)"
        ) from None
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as err:
                raise ConfigError(_listen_problem(host, port, err)) from None


def _listen_problem(host: str, port: int, err: OSError) -> str:
    if err.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use (another `owl serve`?); stop what listens "
            "there, or pick another port with --port (or OWL_PORT)"
        )
    if err.errno == errno.EACCES:
        return f"no permission to listen on port {port}; use a port above 1023 with --port"
    if err.errno == errno.EADDRNOTAVAIL:
        return (
            f"{host} is not an address of this machine; give --host 127.0.0.1 (this machine "
            "only) or 0.0.0.0 (every network)"
        )
    return f"cannot listen on {host}:{port}: {err.strerror}; check --host and --port"


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
