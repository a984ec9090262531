"""Run the `owl` console script as a user does: a real process over a given OWL_HOME."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import cli_env

OWL = str(Path(sys.executable).with_name("owl"))


def owl(
    home: Path, *args: str, stdin: str | None = None, timeout: float = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [OWL, *args],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        env=cli_env(home),
        timeout=timeout,
    )
