"""Scan model files before anything loads them: `owl.scan.scan(paths)`.

Every file is sniffed by content and handed to the checker for its format; a checker
returns findings or raises Unverified. Nothing here executes, imports or deserialises
anything from a file, and nothing reads tensor bytes.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
from collections.abc import Callable, Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, computed_field

from owl import __version__
from owl.errors import ModelFormatError
from owl.formats import not_a_regular_file
from owl.scan.detect import Kind, promises_model, sniff
from owl.scan.findings import (
    EXIT_CODES,
    ExitCode,
    FileReport,
    Finding,
    Severity,
    Unverified,
    Verdict,
)

log = logging.getLogger(__name__)

Checker = Callable[..., list[Finding]]


# The checker for each kind, imported on use: `owl run` needs only GGUF and templates.
_CHECKERS = {
    Kind.GGUF: ("owl.scan.gguf", "scan_gguf"),
    Kind.SAFETENSORS: ("owl.scan.safetensors", "scan_safetensors"),
    Kind.ZIP: ("owl.scan.archives", "scan_zip"),
    Kind.NPY: ("owl.scan.archives", "scan_npy"),
    Kind.PICKLE: ("owl.scan.pickles", "scan_pickle"),
    Kind.JOBLIB: ("owl.scan.joblib_files", "scan_joblib"),
    Kind.TAR: ("owl.scan.torch_tar", "scan_tar"),
    Kind.CTRANSLATE2: ("owl.scan.ctranslate2", "scan_ctranslate2"),
    Kind.SENTENCEPIECE: ("owl.scan.sentencepiece", "scan_sentencepiece"),
    Kind.ONNX: ("owl.scan.onnx", "scan_onnx"),
    Kind.TOKENIZER_CONFIG: ("owl.scan.templates", "scan_tokenizer_config"),
    Kind.TEMPLATE_CONFIG: ("owl.scan.templates", "scan_template_config"),
    Kind.JINJA: ("owl.scan.templates", "scan_jinja_file"),
    Kind.CODE_CONFIG: ("owl.scan.remote_code", "scan_code_config"),
    Kind.PYTHON: ("owl.scan.remote_code", "scan_python"),
}


def _checker(kind: Kind) -> Checker:
    module, function = _CHECKERS[kind]
    return getattr(importlib.import_module(module), function)


@cache
def scanner_version() -> str:
    """owl's version plus a digest of the rule files: a verdict from other rules is stale."""
    digest = hashlib.sha256()
    for rules in sorted(Path(__file__).parent.glob("*.toml")):
        digest.update(rules.name.encode() + b"\0" + rules.read_bytes())
    return f"{__version__}+rules.{digest.hexdigest()[:12]}"


def scan_file(path: Path, *, name: str | None = None) -> FileReport:
    """Scan one file; `name` is how to call it (a store blob's original file name)."""
    shown = name or str(path)
    if not path.is_file():  # a FIFO would block the read below for ever
        return FileReport(
            file=shown,
            format="unknown",
            status="unverified",
            error="not a regular file (a pipe, socket or device); owl reads only files",
        )
    try:
        kind = sniff(path, name=name)
    except OSError as err:
        return FileReport(
            file=shown, format="unknown", status="unverified", error=f"cannot read it: {err}"
        )
    if kind is Kind.UNKNOWN:
        if promises_model(shown):
            return FileReport(
                file=shown,
                format="unknown",
                status="unverified",
                error="named like a model file, but its content is none of the formats owl "
                "checks (pickle, joblib, torch zip, torch tar, numpy, safetensors, GGUF, "
                "CTranslate2, SentencePiece, ONNX); do not load it",
            )
        return FileReport(file=shown, format="unknown", status="unsupported")
    try:
        findings = _checker(kind)(path, file=shown)
    except Unverified as err:
        return FileReport(
            file=shown,
            format=kind.value,
            status="unverified",
            findings=err.findings,
            error=f"{err.location}: {err.reason}" if err.location else err.reason,
        )
    except Exception as err:  # a checker bug must still not call the file clean
        log.debug("checker for %s failed", shown, exc_info=True)
        return FileReport(
            file=shown,
            format=kind.value,
            status="unverified",
            error=f"owl's {kind.value} checker failed ({type(err).__name__}: {err})",
        )
    return FileReport(file=shown, format=kind.value, status="scanned", findings=findings)


def _files(paths: Iterable[Path]) -> Iterable[tuple[Path, str]]:
    for path in paths:
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if child.is_file() and ".git" not in child.relative_to(path).parts:
                    yield child, str(child)
        else:
            yield path, str(path)


def blocking(finding: Finding, *, strict: bool) -> bool:
    """Whether a finding makes its file unsafe: high and critical ones, any under --strict."""
    return strict or finding.severity.rank >= Severity.HIGH.rank


class ScanReport(BaseModel):
    """What a scan of several files found, and the one verdict for all of them."""

    files: list[FileReport]
    strict: bool = False

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> Verdict:
        findings = [finding for report in self.files for finding in report.findings]
        if any(blocking(finding, strict=self.strict) for finding in findings):
            return Verdict.UNSAFE
        if any(report.status == "unverified" for report in self.files):
            return Verdict.UNVERIFIED
        if not any(report.status == "scanned" for report in self.files):
            return Verdict.NO_SUPPORTED_FILES
        return Verdict.CLEAN

    @computed_field  # type: ignore[prop-decorator]
    @property
    def exit_code(self) -> int:
        return int(EXIT_CODES[self.verdict])

    @property
    def findings(self) -> list[Finding]:
        """All findings, the most severe first."""
        found = [finding for report in self.files for finding in report.findings]
        return sorted(found, key=lambda finding: -finding.severity.rank)

    def summary(self) -> dict[str, Any]:
        """The JSON `owl scan --json` prints."""
        return {
            "verdict": self.verdict.value,
            "exit_code": self.exit_code,
            "strict": self.strict,
            "scanner": scanner_version(),
            "findings": [finding.model_dump(mode="json") for finding in self.findings],
            "files": [
                report.model_dump(mode="json", exclude={"findings"}) for report in self.files
            ],
        }


def scan(paths: Sequence[Path], *, strict: bool = False) -> ScanReport:
    """Scan files and folders (recursively). FileNotFoundError names a path that is absent;
    ModelFormatError one that is neither a file nor a folder (a FIFO, a socket, a device)."""
    for path in paths:
        if not path.exists():
            raise FileNotFoundError(path)
        if not (path.is_file() or path.is_dir()):
            raise ModelFormatError(not_a_regular_file(path))
    return ScanReport(
        files=[scan_file(path, name=shown) for path, shown in _files(paths)], strict=strict
    )


__all__ = [
    "ExitCode",
    "FileReport",
    "Finding",
    "ScanReport",
    "Severity",
    "Unverified",
    "Verdict",
    "blocking",
    "scan",
    "scan_file",
    "scanner_version",
]
