"""Scan verdicts of stored files: made once per digest and kept in the manifests.

The store keeps the records (ScanRecord in a manifest); making them needs the scanner, so it
lives here, above the store, and the store never imports the scanner.
"""

from __future__ import annotations

from owl.scan import FileReport, ScanReport, scan_file, scanner_version
from owl.store.manifest import FileEntry, ScanRecord
from owl.store.store import Store


def record_of(report: FileReport, *, scanner: str) -> ScanRecord:
    """What a manifest keeps of one file's scan."""
    verdict = ScanReport(files=[report]).verdict.value
    return ScanRecord(
        verdict="unsupported" if report.status == "unsupported" else verdict,
        scanner=scanner,
        format=report.format,
        findings=[finding.model_dump(mode="json") for finding in report.findings],
        error=report.error,
    )


def display_name(model: str, entry: FileEntry) -> str:
    """How a stored file is named in findings: the model, then the file's own name."""
    return f"{model}/{entry.filename}"


def scan_entries(
    store: Store, entries: list[FileEntry], *, model: str, reuse: bool = True
) -> dict[str, ScanRecord]:
    """A scan record for each file: reused when a manifest already has one for its digest.

    An "unverified" record is never reused: the scan that made it may have read a blob that
    was missing or damaged then (`owl scan` after `owl verify` moved it aside), and the
    bytes now under that digest are whole. Pass `reuse=False` for bytes just restored.
    """
    version = scanner_version()
    records: dict[str, ScanRecord] = {}
    for entry in entries:
        cached = store.scan_record(entry.digest, version) if reuse else None
        if cached is None or cached.verdict == "unverified":
            report = scan_file(store.blobs.path(entry.digest), name=display_name(model, entry))
            cached = record_of(report, scanner=version)
        records[entry.digest] = cached
    return records
