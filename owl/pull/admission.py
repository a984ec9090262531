"""The tail of every pull, written once: scan → refuse unverified → inspect → license → save.

A source (a file, URL, Hub file, package) or a model folder first puts its bytes into the
blob store; `admit` then decides, on those stored bytes, whether they become a model. Until
the manifest is saved nothing names them, so a refusal removes the blobs the pull added
(unless another model uses them) and the store is as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owl.errors import ModelFormatError, OwlError
from owl.formats.card import CARD, read_card
from owl.formats.info import ModelInfo
from owl.licenses.discover import find_license
from owl.scan.records import scan_entries
from owl.signatures import NO_TRUST, SIGNATURE_FILE, Trust, require_signed, verify_signature
from owl.store.manifest import FileEntry, Manifest, ScanRecord, SignatureRecord, Source
from owl.store.ref import ModelName
from owl.store.store import Store

log = logging.getLogger(__name__)

# Reads the stored files ({file name: blob path}) into facts; ModelFormatError when broken.
Reader = Callable[[Mapping[str, Path]], ModelInfo]
# Refuses stored files before they are scanned (an OwlError), e.g. a folder's remote code.
Check = Callable[[Mapping[str, Path]], None]


@dataclass(frozen=True)
class Licensing:
    """What a pull was told of the license besides its files: owl's catalog, a built-in
    name (alias), the user (--license)."""

    catalog: str | None = None
    alias: str | None = None
    user: str | None = None

    @classmethod
    def given(cls, sources: Mapping[str, str] | None, *, user: str | None = None) -> Licensing:
        """From a manifest's `license_sources` (a pull again keeps them) and the user's."""
        sources = sources or {}
        return cls(
            catalog=sources.get("catalog"),
            alias=sources.get("alias"),
            user=user or sources.get("user"),
        )


def discard(store: Store, digests: Collection[str]) -> None:
    """Remove the blobs `digests` that no stored model uses (what a refused pull added)."""
    unused = set(digests) - store.used_digests()
    for digest in unused:
        store.blobs.remove(digest)


def admit(
    entries: list[FileEntry],
    *,
    store: Store,
    target: ModelName,
    source: Source,
    added: Collection[str],
    read: Reader,
    licensing: Licensing,
    card: str | None = None,
    parameters: dict[str, Any] | None = None,
    rescan: bool = False,
    check: Check | None = None,
    trust: Trust = NO_TRUST,
    signature: Path | None = None,
) -> Manifest:
    """Make the stored files `entries` the model `target`, or refuse them; its manifest.

    Every file is scanned before anything else parses it: a file the scan cannot verify is
    refused (ModelFormatError); one it finds unsafe is kept with that verdict, and run/serve
    refuse it. `rescan` scans afresh bytes just restored (a stored verdict may be of the
    damaged copy). Then `read` inspects them, and the license is looked for in their
    metadata, the model card (a README.md among them, else `card`, the one the source
    gave) and `licensing`; where they disagree the stricter is kept and the disagreement
    logged. On any OwlError the blobs in `added` that no model uses are removed.

    A model.sig among the files is checked first (owl.signatures): files that differ from
    what it signed are refused, and with `trust` so is a signer other than the trusted one.
    `signature` is a signature file the user named for a single-file model, which must be
    among the files it signed. Without either, `trust.require` refuses the model.
    """
    stored = {entry.filename: store.blobs.path(entry.digest) for entry in entries}
    try:
        signed = _check_signature(entries, stored, trust=trust, signature=signature)
        if check is not None:
            check(stored)
        scans = scan_entries(store, entries, model=str(target), reuse=not rescan)
        for entry in entries:
            _refuse_unverified(entry, scans[entry.digest])
        info = read(stored)
        card_text = read_card(stored[CARD]) if CARD in stored else card
    except OwlError:
        discard(store, added)
        raise
    chosen, found, notes = find_license(
        gguf_metadata=info.metadata,
        card_text=card_text,
        catalog=licensing.catalog,
        alias=licensing.alias,
        user=licensing.user,
    )
    for note in notes:
        log.warning("%s: %s", target, note)
    manifest = Manifest(
        name=target.name,
        tag=target.tag,
        format=info.format,
        files=entries,
        source=source,
        license=chosen,
        license_sources=found,
        parameters=parameters or {},
        info=info.summary(),
        scans=scans,
        signature=signed,
    )
    store.save(manifest)
    return manifest


def _check_signature(
    entries: list[FileEntry], stored: Mapping[str, Path], *, trust: Trust, signature: Path | None
) -> SignatureRecord | None:
    digests = {entry.filename: entry.digest for entry in entries}
    if SIGNATURE_FILE in stored:
        return verify_signature(
            stored[SIGNATURE_FILE], digests, trust=trust, whole=True, name=SIGNATURE_FILE
        )
    if signature is not None:
        return verify_signature(signature, digests, trust=trust, whole=False)
    require_signed(trust, where=", ".join(sorted(stored)) or "the model")
    return None


def _refuse_unverified(entry: FileEntry, record: ScanRecord) -> None:
    if record.verdict != "unverified":
        return
    kind = "GGUF" if record.format == "gguf" else (record.format or "model")
    raise ModelFormatError(
        f"{entry.filename} is not a valid {kind} file, so nothing was stored ({record.error})"
    )
