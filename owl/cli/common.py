"""What every command shares: JSON output, usage errors that exit 4, the unsafe-model warning."""

from __future__ import annotations

import json
from typing import Any

import typer
from typer.core import TyperCommand

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
