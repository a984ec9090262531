"""owl scan against the corpus (tests/support/corpus.py): every malicious file is unsafe,
every malformed one unverified, and every benign twin clean — no false positives."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.scan import FileReport, blocking, scan_file
from tests.support.corpus import CASES, Case


def outcome(report: FileReport) -> str:
    if any(blocking(finding, strict=False) for finding in report.findings):
        return "unsafe"
    if report.status == "unverified":
        return "unverified"
    return "clean"


@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.group}:{case.label}")
def test_each_corpus_file_gets_its_verdict(tmp_path: Path, case: Case) -> None:
    report = scan_file(case.write(tmp_path))
    assert outcome(report) == case.expect, report.model_dump()


def test_every_malicious_class_has_a_benign_twin() -> None:
    groups = {case.group for case in CASES if case.intent == "malicious"}
    benign = {case.group for case in CASES if case.intent == "benign"}
    assert groups <= benign
