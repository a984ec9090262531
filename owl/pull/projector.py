"""Vision models: a language-model GGUF and its projector (llama.cpp's mmproj) as one model.

    pulled = pull_vision("hf:ggml-org/SmolVLM-256M-Instruct-GGUF", store=store, settings=s)
    pulled = pull_vision("smolvlm", projector="./mmproj-f16.gguf", store=store, settings=s)

The model is pulled as any other (owl.pull.references.pull). The projector comes through the
same sources (a file, an http URL, a Hub file: resumable, hashed while written) and the same
admission (scanned like any GGUF, refused when unverified), is checked to be a projector whose
embeddings are as wide as the model's, and becomes the file of role "projector" of a new
manifest of the model that keeps the rest (lineage, license, defaults). A Hub repository
pulled by its name, and a catalog entry that names an mmproj file, bring theirs along.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from owl.catalog import find as find_in_catalog
from owl.config import Settings
from owl.errors import InvalidModelName, ModelFormatError, OwlError
from owl.formats import inspect
from owl.formats.projector import check_projector, is_projector_file
from owl.pull.admission import Licensing, admit
from owl.pull.allowlist import check_source
from owl.pull.references import pull
from owl.pull.sources import fetch
from owl.store.aliases import find_alias
from owl.store.blobs import Progress
from owl.store.manifest import PROJECTOR_ROLE, FileEntry, Manifest, Source
from owl.store.ref import DEFAULT_TAG, ModelRef, RefKind, parse_ref
from owl.store.store import Store

_FETCHABLE = (RefKind.FILE, RefKind.URL, RefKind.HF)
# A quantization in a GGUF's file name ("Q4_K_M", "Q8_0", "IQ3_XS", "F16", "BF16").
_QUANT = re.compile(r"(?<![a-z0-9])(i?q\d(?:_[a-z0-9]+)*|bf16|f16|f32)(?![a-z0-9])", re.I)


@dataclass(frozen=True)
class Pulled:
    """A pulled model, and how its projector was chosen when owl chose it."""

    manifest: Manifest
    projector_note: str | None = None  # "picked mmproj-…-f16.gguf from hf:Org/Repo: …"


def _quant_of(name: str) -> str | None:
    found = _QUANT.findall(PurePosixPath(name).stem)
    return found[-1].upper() if found else None


def pick_projector(files: list[str], model_file: str) -> tuple[str, str] | None:
    """The projector to pull with `model_file` from a repository's `files`, and why; None
    when it has none. The f16 one where there are several (the converter's default, which
    every quantization of the model can use), else the one of the model's quantization."""
    found = sorted(name for name in files if is_projector_file(name))
    if not found:
        return None
    if len(found) == 1:
        return found[0], "the repository's only projector"
    f16 = [name for name in found if _quant_of(name) == "F16"]
    if f16:
        return f16[0], f"the f16 one of {len(found)}"
    quant = _quant_of(model_file)
    same = [name for name in found if quant and _quant_of(name) == quant]
    if same:
        return same[0], f"the one of the model's quantization ({quant}), of {len(found)}"
    return found[0], f"the first of {len(found)} by name (none is f16 or {quant or 'alike'})"


def pull_vision(
    ref: ModelRef | str,
    *,
    store: Store,
    settings: Settings,
    projector: str | None = None,
    find_projector: bool = True,
    progress: Progress | None = None,
    allow_private: bool = True,
    **options: Any,
) -> Pulled:
    """Pull a model (owl.pull.pull: `options` are its) with its projector.

    `projector` (a file, http(s) URL or hf: file) is added to the model, stored already or
    pulled now. Without one, and with `find_projector`, a Hub repository pulled by its name
    brings the projector it publishes (pick_projector), and a catalog entry its mmproj file;
    a stored vision model whose projector blob was lost gets it again from where it came.
    When the projector is refused, a model this call pulled is removed again.
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    before = {manifest.display_name for manifest in store.list()}
    restore_from = None
    if ref.kind is RefKind.NAME and ref.name is not None:
        existing = store.find(ref.name)
        if existing is not None and existing.projector is not None and projector is None:
            restore_from = existing.projector_source
        listed = existing is None and find_alias(ref.name) is None and ref.name.tag == DEFAULT_TAG
        entry = find_in_catalog(ref.name.name) if listed else None
        if entry is not None and entry.mmproj_file and projector is None and find_projector:
            projector = f"hf:{entry.gguf_repo}/{entry.mmproj_file}"
    manifest = pull(
        ref, store=store, settings=settings, progress=progress, allow_private=allow_private,
        **options,
    )  # fmt: skip
    note = None
    if projector is None and manifest.projector is None and find_projector:
        if restore_from is not None:
            projector = _file_ref(restore_from)
        elif ref.kind is RefKind.HF and ref.filename is None and manifest.format == "gguf":
            projector, note = _hub_projector(ref, manifest, settings)
    if projector is None:
        return Pulled(manifest)
    try:
        added = add_projector(
            manifest,
            projector,
            store=store,
            settings=settings,
            progress=progress,
            allow_private=allow_private,
            rescan=restore_from is not None,
        )
    except OwlError:
        if manifest.display_name not in before:
            store.remove(manifest.model_name)  # the model came with this pull: nothing stays
        raise
    return Pulled(added, note)


def _file_ref(source: Source) -> str:
    if source.kind is RefKind.HF and source.revision:
        return f"{source.uri}@{source.revision}"
    return source.uri


def _hub_projector(
    ref: ModelRef, manifest: Manifest, settings: Settings
) -> tuple[str | None, str | None]:
    """The projector a Hub repository publishes beside the model pulled from it."""
    from owl.pull.sources.hf import hub_errors, repo_files

    assert ref.repo_id is not None
    where = f"hf:{ref.repo_id}"
    with hub_errors(where, filename=None, revision=ref.revision):
        files = repo_files(ref.repo_id, ref.revision, settings)
    picked = pick_projector(files, manifest.weights.filename)
    if picked is None:
        return None, None
    name, why = picked
    revision = f"@{ref.revision}" if ref.revision else ""
    note = f"projector {PurePosixPath(name).name} from {where}: {why} (--no-mmproj skips it)"
    return f"{where}/{name}{revision}", note


def add_projector(
    manifest: Manifest,
    projector: ModelRef | str,
    *,
    store: Store,
    settings: Settings,
    progress: Progress | None = None,
    allow_private: bool = True,
    rescan: bool = False,
) -> Manifest:
    """The stored GGUF model `manifest` with the projector `projector` as its file of role
    "projector" (replacing one it had), saved as a new manifest; ModelFormatError when the
    file is no projector or another model's, and then nothing changes."""
    ref = parse_ref(projector) if isinstance(projector, str) else projector
    if ref.kind not in _FETCHABLE:
        raise InvalidModelName(
            f"--mmproj takes a projector file: a path, an http(s) URL or an hf:Org/Repo/FILE "
            f"reference, not {ref.raw!r}"
        )
    if manifest.format != "gguf":
        raise ModelFormatError(
            f"'{manifest.display_name}' is a {manifest.format} model; a projector (mmproj) goes "
            "with a GGUF language model"
        )
    check_source(ref, settings=settings)
    used = store.used_digests()
    fetched = fetch(
        ref, blobs=store.blobs, settings=settings, progress=progress, allow_private=allow_private
    )
    entry = FileEntry(
        role=PROJECTOR_ROLE, filename=fetched.filename, digest=fetched.digest, size=fetched.size
    )
    if manifest.projector == entry and not rescan:
        return manifest
    kept = [file for file in manifest.files if file.role != PROJECTOR_ROLE]
    model_path = store.weights_path(manifest)

    def read(stored: dict) -> Any:  # the model's facts, once the projector is known to fit
        if entry.filename in {file.filename for file in kept}:
            raise ModelFormatError(
                f"the projector {entry.filename} has the name of one of the model's files; "
                "rename it"
            )
        info = inspect(model_path)
        check_projector(
            inspect(stored[entry.filename]).metadata,
            filename=entry.filename,
            embedding_length=info.embedding_length,
        )
        return info

    source = Source(kind=ref.kind, uri=fetched.uri, revision=fetched.revision)
    saved = admit(
        [*kept, entry],
        store=store,
        target=manifest.model_name,
        source=manifest.source,
        added=[] if fetched.digest in used else [fetched.digest],
        read=read,
        licensing=Licensing.given(manifest.license_sources),
        parameters=manifest.parameters,
        rescan=rescan,
    )
    # The model is the same one: its lineage, license and records stay as they were.
    final = saved.model_copy(
        update={
            "license": manifest.license,
            "license_sources": manifest.license_sources,
            "parents": manifest.parents,
            "info": manifest.info or saved.info,
            "allow_unsafe": manifest.allow_unsafe,
            "signature": manifest.signature,
            "projector_source": None if source == manifest.source else source,
        }
    )
    store.save(final)
    return final
