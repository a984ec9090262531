"""Run the `owl` console script as a user does: a real process over a given OWL_HOME."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
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


class TerminalSession:
    """`owl ARGS` on a pseudo-terminal, as a person at a keyboard runs it: what it writes is
    read as it comes (`read_until`), lines are typed into it (`type`)."""

    def __init__(self, home: Path, *args: str) -> None:
        leader, follower = pty.openpty()
        self.process = subprocess.Popen(
            [OWL, *args],
            stdin=follower,
            stdout=follower,
            stderr=follower,
            env=cli_env(home),
            close_fds=True,
        )
        os.close(follower)
        self._leader = leader
        self.seen = b""

    def read_until(self, marker: bytes, count: int = 1, *, timeout: float = 120) -> None:
        """Read until `marker` has appeared `count` times in all; fails with the transcript
        when it has not within `timeout` seconds or the program closed the terminal."""
        deadline = time.monotonic() + timeout
        while self.seen.count(marker) < count:
            left = deadline - time.monotonic()
            assert left > 0, self.seen.decode(errors="replace")
            ready, _, _ = select.select([self._leader], [], [], min(left, 1))
            if ready:
                chunk = os.read(self._leader, 4096)
                assert chunk, self.seen.decode(errors="replace")
                self.seen += chunk

    def type(self, line: str) -> None:
        os.write(self._leader, line.encode() + b"\n")

    def close(self, *, timeout: float = 60) -> int:
        """Wait for the program to end; its exit status."""
        try:
            return self.process.wait(timeout=timeout)
        finally:
            os.close(self._leader)

    @property
    def transcript(self) -> str:
        return self.seen.decode(errors="replace")
