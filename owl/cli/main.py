"""The `owl` command: Typer app, and the one place CLI errors become exit codes."""

from __future__ import annotations

import logging
import sys

import typer

from owl.errors import OwlError

app = typer.Typer(
    name="owl",
    help="open weights, local: pull, inspect, run and serve open-weights models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    from owl.cli import (
        catalog,
        convert,
        distill,
        evals,
        export,
        license,
        lock,
        models,
        ps,
        quantize,
        run,
        scan,
        serve,
        tune,
    )

    for module in (
        models,
        run,
        serve,
        ps,
        scan,
        catalog,
        license,
        lock,
        convert,
        quantize,
        evals,
        distill,
        export,
        tune,
    ):
        module.register(app)


def main() -> None:
    """Entry point of the console script: one clear line and exit 1 on any OwlError."""
    _register()
    logging.basicConfig(format="owl: %(levelname)s: %(message)s", level=logging.WARNING)
    try:
        app()
    except OwlError as err:
        typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
