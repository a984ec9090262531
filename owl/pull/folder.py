"""Pull a model folder as one model: a Hugging Face folder (config.json, *.safetensors,
tokenizer files), a CTranslate2 Whisper folder, a Piper voice or a diffusers pipeline
(owl.formats.folders).

Every top-level file becomes a blob and a FileEntry with its role (of a diffusers pipeline:
the files of its layout, in their component sub-folders); every file is scanned.
The folder is checked before anything is copied (its weights, shards the index names, no
`auto_map` code), and checked again on the stored bytes, which are the ones a loader reads.
Nothing is stored when a check fails or a file cannot be verified.
"""

from __future__ import annotations

import logging
from pathlib import Path

from owl.errors import NameClash, OwlError
from owl.formats.diffusers import INDEX as DIFFUSERS_INDEX
from owl.formats.diffusers import select_files as diffusers_files
from owl.formats.folders import check_folder, folder_format, folder_role, read_folder
from owl.formats.hf_folder import is_plain_filename, list_folder
from owl.formats.sentence_folder import module_files
from owl.pull.admission import Licensing, admit, discard
from owl.scan.records import scan_entries
from owl.signatures import NO_TRUST, Trust
from owl.store.blobs import Progress, sha256_file
from owl.store.manifest import FileEntry, Manifest, Source
from owl.store.ref import ModelName, RefKind
from owl.store.snapshots import listing_digest
from owl.store.store import Store

log = logging.getLogger(__name__)


def model_files(folder: Path) -> tuple[str, dict[str, Path]]:
    """The format of the model folder and the files owl stores, checked; {name: path}.

    Files whose names are not plain (spaces, odd characters) are skipped with a warning:
    names become paths in the store's snapshot folders. Sub-folders are not part of it, but
    for a diffusers pipeline's components (owl.formats.diffusers.select_files) and a
    sentence-transformers folder's module configs (owl.formats.sentence_folder.module_files).
    """
    files: dict[str, Path] = {}
    if (folder / DIFFUSERS_INDEX).is_file():
        files = diffusers_files(folder)
        check_folder(files, format="diffusers", where=str(folder))
        return "diffusers", files
    for name, path in list_folder(folder).items():
        if is_plain_filename(name):
            files[name] = path
        else:
            log.warning("%s: skipping %r, not a plain file name", folder, name[:120])
    format = folder_format(files, where=str(folder))
    if format == "safetensors":  # a sentence-transformers folder's pooling config, …
        files.update(module_files(folder))
    check_folder(files, format=format, where=str(folder))
    return format, files


def pull_folder(
    folder: Path,
    *,
    store: Store,
    target: ModelName,
    licensing: Licensing,
    parameters: dict | None = None,
    progress: Progress | None = None,
    trust: Trust = NO_TRUST,
    source: Source | None = None,
) -> Manifest:
    """Store the model folder at `folder` (resolved) as `target`; returns its manifest.

    Pulling the same folder again returns the stored model, with its lost or damaged
    (wrong-size) blobs restored and scanned afresh; a folder whose files changed since
    raises NameClash, as a different file would. `source` is where the folder came from
    (default: the folder itself; a `package:` folder names its distribution).
    """
    format, files = model_files(folder)
    entries = [
        FileEntry(
            role=folder_role(name, format=format),
            filename=name,
            digest=sha256_file(path),
            size=path.stat().st_size,
        )
        for name, path in files.items()
    ]
    existing = store.find(target)
    if existing is not None and listing_digest(existing.files) != listing_digest(entries):
        raise NameClash(
            f"'{target}' was pulled from {folder}, whose files have changed since; pull it "
            f"with --name OTHER, or `owl rm {target}` first and pull it again"
        )
    added = _import(entries, files, store=store, progress=progress)
    if existing is not None:
        try:
            return _rescanned(existing, added, store=store)
        except OwlError:
            discard(store, added)
            raise
    return admit(
        entries,
        store=store,
        target=target,
        source=source or Source(kind=RefKind.FILE, uri=str(folder)),
        added=added,
        # The bytes a loader will read are checked, not the folder's as it is now.
        check=lambda stored: check_folder(stored, format=format, where=str(folder)),
        read=lambda stored: read_folder(stored, format=format, where=str(folder)),
        licensing=licensing,
        parameters=parameters,
        trust=trust,
    )


def _rescanned(manifest: Manifest, restored: list[str], *, store: Store) -> Manifest:
    """The stored model, its restored files scanned afresh (their verdict may be of the
    damaged copy, or of none: `owl scan` of a blob that `owl verify` had moved aside)."""
    entries = [entry for entry in manifest.files if entry.digest in restored]
    if not entries:
        return manifest
    records = scan_entries(store, entries, model=manifest.display_name, reuse=False)
    updated = manifest.model_copy(update={"scans": {**manifest.scans, **records}})
    store.save(updated)
    return updated


def _import(
    entries: list[FileEntry],
    files: dict[str, Path],
    *,
    store: Store,
    progress: Progress | None,
) -> list[str]:
    """Copy the files whose blobs are missing; the digests added. A file that changed since
    it was hashed raises DigestMismatch (and what was added before it is removed)."""
    missing = {
        entry.digest: entry
        for entry in entries
        if not store.blobs.intact(entry.digest, entry.size)  # a truncated blob is replaced
    }
    total = sum(entry.size for entry in missing.values())
    done = 0
    added: list[str] = []
    try:
        for digest, entry in missing.items():

            def step(copied: int, _total: int | None, offset: int = done) -> None:
                if progress:
                    progress(offset + copied, total)

            store.blobs.import_file(files[entry.filename], expected=digest, progress=step)
            added.append(digest)
            done += entry.size
    except BaseException:
        for digest in set(added) - store.used_digests():
            store.blobs.remove(digest)
        raise
    return added
