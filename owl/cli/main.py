"""The `owl` command: Typer app, and the one place CLI errors become exit codes."""

from __future__ import annotations

import logging
import sys
from typing import NoReturn

import typer
from pydantic import ValidationError

from owl.cli.common import invalid_value, os_error, text_error
from owl.config import settings_error
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
        docs,
        doctor,
        draw,
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
        sign,
        speech,
        tune,
        ui,
    )

    for module in (
        models,
        run,
        serve,
        ps,
        scan,
        sign,
        doctor,
        docs,
        speech,
        draw,
        catalog,
        license,
        lock,
        convert,
        quantize,
        evals,
        distill,
        export,
        tune,
        ui,
    ):
        module.register(app)


def _fail(err: Exception) -> NoReturn:
    typer.secho(f"error: {err}", err=True, fg=typer.colors.RED)
    sys.exit(1)


def main() -> None:
    """Entry point of the console script: one clear line and exit 1 on any OwlError.

    Settings that do not validate, an OWL_HOME that cannot be used and text that is not
    UTF-8 come from the user's environment, not from a bug: they get one line too.
    """
    _register()
    logging.basicConfig(format="owl: %(levelname)s: %(message)s", level=logging.WARNING)
    try:
        app()
    except OwlError as err:
        _fail(err)
    except ValidationError as err:  # Settings built past load_settings(), or another model
        _fail(settings_error(err) if err.title == "Settings" else invalid_value(err))
    except UnicodeError as err:
        _fail(text_error(err, sys.argv[1:]))
    except OSError as err:
        _fail(os_error(err))
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit as exit_:
        if exit_.code == 130:  # typer's own answer to Ctrl-C inside a command: say so
            typer.echo("interrupted", err=True)
        raise


if __name__ == "__main__":
    main()
