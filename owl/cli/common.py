"""What every command shares: JSON output, and usage errors that exit 4."""

from __future__ import annotations

import json
from typing import Any

from typer.core import TyperCommand

from owl.scan.findings import ExitCode


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
