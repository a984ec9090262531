"""The gate before loading: a stored model whose files are unsafe or unverified stays out.

Verdicts come from the manifest (made at pull time). A manifest from before scanning
existed, or one judged by other rules, is scanned here first. `allow_unsafe` lets an
expert load it anyway; each such load is written into the manifest. A model an advisory
marks malicious (advisories.py) is refused before that, and --allow-unsafe does not let it
through: an advisory is a report of harm, not a scanner's suspicion.
"""

from __future__ import annotations

import logging

from owl.config import advisory_file
from owl.errors import UnsafeModel, UnverifiedModel
from owl.scan import FileReport, scan_file, scanner_version
from owl.scan.advisories import Advisories, describe, load_advisories, model_advisories
from owl.scan.records import display_name, record_of, scan_entries
from owl.store.manifest import Manifest, ScanRecord, UnsafeOverride
from owl.store.store import Store

log = logging.getLogger(__name__)

_KEEP_OVERRIDES = 50  # the audit trail of --allow-unsafe loads, newest last
_ORDER = {"clean": 0, "unsupported": 0, "unverified": 1, "unsafe": 2}


def ensure_scanned(manifest: Manifest, *, store: Store, rescan: bool = False) -> Manifest:
    """The manifest with a current scan record for every file (saved if it changed)."""
    version = scanner_version()
    stale = [
        entry
        for entry in manifest.files
        if rescan
        or entry.digest not in manifest.scans
        or manifest.scans[entry.digest].scanner != version
    ]
    if not stale:
        return manifest
    records = scan_entries(store, stale, model=manifest.display_name, reuse=not rescan)
    updated = manifest.model_copy(update={"scans": {**manifest.scans, **records}})
    store.save(updated)
    return updated


def scan_manifest(manifest: Manifest, *, store: Store) -> tuple[list[FileReport], Manifest]:
    """Scan a stored model's files afresh; the manifest's records are updated and saved."""
    version = scanner_version()
    reports = [
        scan_file(store.blobs.path(entry.digest), name=display_name(manifest.display_name, entry))
        for entry in manifest.files
    ]
    records = {
        entry.digest: record_of(report, scanner=version)
        for entry, report in zip(manifest.files, reports, strict=True)
    }
    updated = manifest.model_copy(update={"scans": {**manifest.scans, **records}})
    store.save(updated)
    return reports, updated


def verdict_of(manifest: Manifest) -> str:
    """The worst verdict among the manifest's files.

    "clean" when every file is clean or of a kind no scan applies to (a folder's config.json
    and README.md beside clean weights); "unsupported" only when no file was checked at all.
    """
    verdicts = [
        manifest.scans[entry.digest].verdict if entry.digest in manifest.scans else "unverified"
        for entry in manifest.files
    ]
    worst = max(verdicts, key=lambda verdict: _ORDER.get(verdict, 1), default="clean")
    if _ORDER.get(worst, 1) == 0 and "clean" in verdicts:
        return "clean"
    return worst


def first_reason(manifest: Manifest) -> str:
    """The most severe finding of a model, in one line (why its verdict is not clean)."""
    records: list[tuple[str, ScanRecord]] = [
        (entry.filename, manifest.scans[entry.digest])
        for entry in manifest.files
        if entry.digest in manifest.scans
    ]
    for filename, record in records:
        severe = [
            finding for finding in record.findings if finding["severity"] in ("critical", "high")
        ]
        if severe:
            finding = severe[0]
            more = f" (and {len(severe) - 1} more)" if len(severe) > 1 else ""
            return (
                f"{finding['severity']} finding in {filename}, {finding['location']}: "
                f"{finding['reason']}{more}"
            )
    for filename, record in records:
        if record.verdict == "unverified":
            return f"{filename} could not be verified: {record.error}"
    return "its files were not scanned"


def refuse_advised(manifest: Manifest, *, advisories: Advisories) -> None:
    """Raise UnsafeModel, naming the advisory, when one marks the model malicious."""
    hits = model_advisories(manifest, advisories)
    if not hits:
        return
    name = manifest.display_name
    more = f" (and {len(hits) - 1} more advisories)" if len(hits) > 1 else ""
    raise UnsafeModel(
        f"model '{name}' is marked malicious by advisory {describe(hits[0])}{more}; owl will "
        f"not load it, not even with --allow-unsafe. Remove it with `owl rm {name}`; "
        "`owl doctor` lists every stored model an advisory names"
    )


def require_loadable(
    manifest: Manifest,
    *,
    store: Store,
    allow_unsafe: bool = False,
    by: str = "owl",
    advisories: Advisories | None = None,
) -> Manifest:
    """Raise UnsafeModel/UnverifiedModel unless the model's verdict is clean.

    A model an advisory marks malicious is refused first, whatever `allow_unsafe` says;
    `advisories` defaults to owl's own and OWL_ADVISORIES' (ConfigError if that file is
    broken). With `allow_unsafe` an unsafe or unverified model passes with a warning, and
    the manifest records who let it through (`by`, e.g. "owl run --allow-unsafe").
    """
    if advisories is None:
        advisories = load_advisories(advisory_file())
    refuse_advised(manifest, advisories=advisories)
    manifest = ensure_scanned(manifest, store=store)
    verdict = verdict_of(manifest)
    if _ORDER.get(verdict, 1) == 0:
        return manifest
    name = manifest.display_name
    reason = first_reason(manifest)
    if allow_unsafe:
        log.warning("loading %s model '%s' because of --allow-unsafe: %s", verdict, name, reason)
        trail = [*manifest.allow_unsafe, UnsafeOverride(verdict=verdict, by=by)]
        manifest = manifest.model_copy(update={"allow_unsafe": trail[-_KEEP_OVERRIDES:]})
        store.save(manifest)
        return manifest
    error = UnsafeModel if verdict == "unsafe" else UnverifiedModel
    raise error(
        f"model '{name}' is {verdict}, so owl will not load it: {reason}. "
        f"See `owl scan {name}`. To load it anyway (experts only): "
        f"`owl run {name} --allow-unsafe` or `owl serve --allow-unsafe {name}`"
    )
