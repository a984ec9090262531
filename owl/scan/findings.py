"""What a scan reports: findings with a severity, per-file reports, and the verdict.

A checker returns the findings it made, or raises Unverified when it could not read the
file to the end: a file owl could not verify is never reported clean.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Severity(StrEnum):
    CRITICAL = "critical"  # runs code or reads/writes the machine when loaded
    HIGH = "high"  # does something no model file needs (an unknown import, a gadget)
    MEDIUM = "medium"  # risky or deceptive, not harmful alone (object arrays, mislabelled)
    LOW = "low"  # worth knowing

    @property
    def rank(self) -> int:
        return _RANKS[self]


_RANKS = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class Finding(BaseModel):
    """One thing a checker found, where, and why it matters, in words a person reads."""

    model_config = ConfigDict(frozen=True)

    severity: Severity
    check: str = Field(description="Which rule made it, e.g. 'pickle.global'.")
    file: str
    location: str = Field(description="Where inside the file: opcode offset, member, key, …")
    reason: str


class Unverified(Exception):
    """Raised by a checker when the file is malformed, truncated or unreadable."""

    def __init__(
        self, reason: str, *, location: str = "", findings: list[Finding] | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.location = location
        # What the checker had found before it could read no further: still reported.
        self.findings = list(findings or [])


FileStatus = Literal["scanned", "unverified", "unsupported"]


class FileReport(BaseModel):
    """The outcome for one file."""

    file: str
    format: str
    status: FileStatus
    findings: list[Finding] = Field(default_factory=list)
    error: str | None = None  # why it is unverified or unsupported


class Verdict(StrEnum):
    CLEAN = "clean"
    UNSAFE = "unsafe"
    UNVERIFIED = "unverified"
    NO_SUPPORTED_FILES = "no-supported-files"


class ExitCode(IntEnum):
    """modelscan's convention."""

    CLEAN = 0
    UNSAFE = 1
    UNVERIFIED = 2
    NO_SUPPORTED_FILES = 3
    USAGE = 4


EXIT_CODES = {
    Verdict.CLEAN: ExitCode.CLEAN,
    Verdict.UNSAFE: ExitCode.UNSAFE,
    Verdict.UNVERIFIED: ExitCode.UNVERIFIED,
    Verdict.NO_SUPPORTED_FILES: ExitCode.NO_SUPPORTED_FILES,
}


def read_capped(path: Path, limit: int) -> bytes:
    """A file's bytes, if it has at most `limit` of them; Unverified otherwise (untrusted
    files are never read whole before their size is known to be sane)."""
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as err:
        raise Unverified(f"cannot read the file: {err.strerror or err}") from err
    if len(data) > limit:
        raise Unverified(f"the file is larger than {limit:,} bytes; owl does not analyse it")
    return data
