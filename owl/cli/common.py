"""What every command shares: JSON output, usage errors that exit 4, the unsafe-model warning,
and the words for errors that come from the user's machine rather than from owl."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from typer.core import TyperCommand

from owl.errors import ConfigError, InvalidPrompt, OwlError
from owl.scan.findings import ExitCode
from owl.store import Manifest


def print_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2, default=str, ensure_ascii=False))


class UsageExit4(TyperCommand):
    """modelscan's convention: a usage error exits 4 (click's default 2 means "unverified")."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except Exception as err:  # typer vendors click: its UsageError is not importable
            if getattr(err, "exit_code", None) == 2:
                err.exit_code = ExitCode.USAGE  # type: ignore[attr-defined]
            raise


def warn_if_not_clean(manifest: Manifest) -> None:
    """Say on stderr that a model just stored is unsafe or unverified, and what follows."""
    from owl.scan.policy import first_reason, verdict_of

    verdict = verdict_of(manifest)
    if verdict in ("clean", "unsupported"):
        return
    # Kept in the store so that it can be inspected, but run and serve refuse it.
    typer.secho(
        f"warning: {manifest.display_name} is {verdict}: {first_reason(manifest)}. "
        f"`owl run` and `owl serve` will refuse it; `owl scan {manifest.display_name}` "
        f"lists every finding, `owl rm {manifest.display_name}` deletes it",
        err=True,
        fg=typer.colors.RED,
    )


def os_error(err: OSError, *, home: Path | None = None) -> OwlError:
    """An OSError as one line: which path, why, and what to do (OWL_HOME gets its own words).

    `home`: OWL_HOME; by default the one the settings name (none if they do not load).
    """
    home = _settings_home() if home is None else home
    what = err.strerror or type(err).__name__
    named = isinstance(err.filename, str | bytes | os.PathLike) and err.filename
    where = Path(os.fsdecode(err.filename)).absolute() if named else None
    if err.errno == errno.ENOSPC:
        return OwlError(f"no space left on the disk of {where or 'OWL_HOME'}; free some and retry")
    if home is None or where is None or not (where == home or home in where.parents):
        shown = f"{where}: " if where else ""
        return OwlError(f"{shown}{what}; check the path and its permissions")
    blocker = next((part for part in (home, *home.parents) if part.exists()), None)
    if blocker is not None and not blocker.is_dir():
        place = "is a file" if blocker == home else f"is inside {blocker}, which is a file"
        return ConfigError(
            f"OWL_HOME {home} {place}, not a folder; point OWL_HOME at a folder (owl creates "
            "it if it is missing)"
        )
    return ConfigError(
        f"cannot use OWL_HOME {home}: {what} ({where}); make it a folder you can write to, "
        "or point OWL_HOME at another"
    )


def _settings_home() -> Path | None:
    from owl.config import load_settings

    try:
        return load_settings().home
    except OwlError:
        return None


def text_error(err: UnicodeError, argv: Sequence[str]) -> OwlError:
    """Text that is not UTF-8: name the argument when it came from the command line.

    Python hands a non-UTF-8 byte of argv over as a lone surrogate ('\udcff'), which fails
    only later, when the text is encoded for the model or a file.
    """
    for arg in argv:
        if not is_utf8(arg):
            return _not_utf8(f"the argument {ascii(arg)[:60]}")
    return InvalidPrompt(
        f"some text is not valid UTF-8 ({err.reason}); give prompts, names and files in UTF-8"
    )


def is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def require_utf8(text: str | None, what: str) -> str | None:
    """`text` unchanged; InvalidPrompt naming `what` if it cannot be encoded as UTF-8."""
    if text is not None and not is_utf8(text):
        raise _not_utf8(f"{what} ({ascii(text)[:60]})")
    return text


def _not_utf8(what: str) -> InvalidPrompt:
    return InvalidPrompt(
        f"{what} is not valid UTF-8 text; give it in UTF-8 (a terminal with a UTF-8 locale, "
        "e.g. LANG=C.UTF-8)"
    )


def invalid_value(err: ValidationError) -> OwlError:
    """Any other pydantic ValidationError as one line: the field and what it should be."""
    problem = err.errors(include_url=False)[0]
    where = ".".join(str(part) for part in problem["loc"]) or err.title
    return OwlError(f"invalid {where}: {problem['msg']}")


CacheTypeK = Annotated[
    str | None,
    typer.Option("--cache-type-k", help="The KV cache's K type: f16 (default), q8_0 or q4_0."),
]
CacheTypeV = Annotated[
    str | None,
    typer.Option(
        "--cache-type-v", help="The V type: f16 (default), q8_0 or q4_0 (flash attention)."
    ),
]


def chat_lines(history: list[dict[str, Any]], start: int) -> Iterator[str]:
    """The lines a person types into an interactive chat (`>>> `), until /bye, /exit, /quit
    or Ctrl-D; /clear forgets `history[start:]`; a line that is not UTF-8 is refused with a
    word and asked for again."""
    while True:
        try:
            line = input(">>> ")
        except EOFError:
            typer.echo("", err=True)
            return
        command = line.strip()
        if not command:
            continue
        if command in ("/bye", "/exit", "/quit"):
            return
        if command == "/clear":
            del history[start:]
            continue
        if not is_utf8(line):
            typer.secho(
                "error: that line is not valid UTF-8 text; type it again",
                err=True,
                fg=typer.colors.RED,
            )
            continue
        yield line
