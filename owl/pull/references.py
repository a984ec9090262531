"""pull and resolve: from any reference (a name, file, folder, URL, Hub or package file) to a
manifest in the store."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from owl.catalog import find as find_in_catalog
from owl.config import Settings
from owl.errors import (
    LockMismatch,
    ModelFormatError,
    ModelNotFound,
    NameClash,
    OwlError,
    SignatureRequired,
    SourceNotAllowed,
    SourceNotFound,
)
from owl.formats import detect, inspect
from owl.pull.admission import Licensing, admit, discard
from owl.pull.allowlist import check_source
from owl.pull.folder import pull_folder
from owl.pull.sources import fetch
from owl.pull.sources.hf_folder import HubFolder, download, locate
from owl.pull.sources.package import package_folder
from owl.signatures import NO_TRUST, Trust
from owl.store.aliases import aliases, find_alias
from owl.store.blobs import Progress
from owl.store.lock import LOCK_FILE
from owl.store.manifest import FileEntry, Manifest, Source
from owl.store.ref import (
    DEFAULT_TAG,
    ModelName,
    ModelRef,
    RefKind,
    name_from_stem,
    parse_name,
    parse_ref,
)
from owl.store.store import Store

log = logging.getLogger(__name__)


def _same_source(manifest: Manifest, ref: ModelRef, uri: str) -> bool:
    return manifest.source.kind is ref.kind and manifest.source.uri in (uri, ref.raw)


def _source_uri(ref: ModelRef) -> str:
    if ref.kind is RefKind.FILE and ref.path is not None:
        return str(ref.path.expanduser().resolve())
    return ref.raw


def _local_folder(ref: ModelRef) -> tuple[Path, Source] | None:
    """The model folder a file or package reference names (resolved), and its source."""
    if ref.kind is RefKind.PACKAGE:
        packaged = package_folder(ref)
        if packaged is None:
            return None
        path, version = packaged
        return path, Source(kind=RefKind.PACKAGE, uri=ref.raw, revision=version)
    if ref.kind is not RefKind.FILE or ref.path is None:
        return None
    path = ref.path.expanduser()
    if not path.is_dir():
        return None
    return path.resolve(), Source(kind=RefKind.FILE, uri=str(path.resolve()))


def pull(
    ref: ModelRef | str,
    *,
    store: Store,
    settings: Settings,
    name: str | None = None,
    license: str | None = None,
    license_sources: dict[str, str] | None = None,
    parameters: dict[str, Any] | None = None,
    progress: Progress | None = None,
    expect_digest: str | None = None,
    allow_private: bool = True,
    trust: Trust = NO_TRUST,
    signature: Path | None = None,
) -> Manifest:
    """Bring a model into the store and return its manifest.

    `ref` is a store name or built-in alias, a local file, a local Hugging Face model folder
    (config.json, *.safetensors, tokenizer files: stored as one model of format
    "safetensors", one blob per file), an http(s) URL, an `hf:` Hub file or a `package:`
    file. An `hf:` repository or folder that holds a CTranslate2 Whisper (model.bin,
    config.json: hf:Systran/faster-whisper-small) or a Piper voice
    (hf:rhasspy/piper-voices/en/en_US/lessac/medium) is pulled as one model folder, its
    commit recorded. The model is named `name`, else the file's stem (the folder's name,
    the repository's, the voice's). Pulling a name already stored from a different source
    raises NameClash. `parameters` are the model's default sampling parameters (a built-in
    alias brings its own). With `expect_digest` (owl.lock's pin) other bytes are refused
    with LockMismatch.

    The license is looked for in the file's metadata, the Hub model card, owl's catalog
    and built-in names (`license_sources`), and `license` when the caller gives one; where
    they disagree the stricter is kept and the disagreement logged.

    Every file is scanned (owl.scan) and its verdict kept in the manifest; a file that is
    malformed is refused with ModelFormatError and nothing is stored.

    A stored model whose blobs are missing (`owl verify` moved corrupt ones aside) or of
    the wrong size (truncated) is restored from its source and its files scanned afresh.
    `allow_private=False` (a pull made for a server's client) refuses URLs and redirects to
    loopback and private addresses with SourceNotAllowed; the CLI's pulls allow them.
    When OWL_ALLOWED_SOURCES has patterns, a source that matches none is refused with
    SourceNotAllowed before anything is fetched (owl.pull.allowlist).

    A folder's model.sig, or the `signature` file named for a single-file model, is checked
    against the files and, with `trust`, against whom the user trusts (owl.signatures);
    `trust.require` refuses a model without one. A stored model is returned as it is.
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if ref.kind is RefKind.NAME:
        assert ref.name is not None
        existing = store.find(ref.name)
        if existing is not None:
            if not store.damaged(existing):
                return _trusted(existing, trust)
            if existing.source.kind is RefKind.NAME:
                raise ModelNotFound(derived_message(str(ref.name), existing.source.uri))
            # A blob was lost or damaged: pull it again from where it came from.
            check_source(parse_ref(existing.source.uri), settings=settings, via=str(ref.name))
            return pull(
                existing.source.uri,
                store=store,
                settings=settings,
                name=str(ref.name),
                license_sources=existing.license_sources,
                parameters=existing.parameters,
                progress=progress,
                allow_private=allow_private,
            )
        alias = find_alias(ref.name)
        if alias is not None:
            check_source(alias.source, settings=settings, via=str(ref.name))
            return pull(
                alias.source,
                store=store,
                settings=settings,
                name=name or str(alias.name),
                license=license,
                license_sources={"alias": alias.license} if alias.license else None,
                parameters=parameters or alias.parameters,
                progress=progress,
                allow_private=allow_private,
                trust=trust,
                signature=signature,
            )
        return _pull_from_catalog(
            ref.name,
            store=store,
            settings=settings,
            name=name,
            progress=progress,
            allow_private=allow_private,
            trust=trust,
        )

    check_source(ref, settings=settings)  # OWL_ALLOWED_SOURCES: before anything is fetched
    # A Hub reference is read from the repository's file list: a folder, or the file to fetch.
    on_hub = locate(ref, settings=settings) if ref.kind is RefKind.HF else ref
    hub_folder, to_fetch = (on_hub, ref) if isinstance(on_hub, HubFolder) else (None, on_hub)
    located = _local_folder(ref)
    folder, folder_source = located if located else (None, None)
    uri = hub_folder.uri if hub_folder else folder_source.uri if folder_source else _source_uri(ref)
    if name:
        target = parse_name(name)
    elif hub_folder is not None:
        target = hub_folder.name
    elif folder is not None and ref.kind is RefKind.FILE:
        target = name_from_stem(folder.name, source=ref.raw)
    else:
        target = ref.default_name()
    existing = store.find(target)
    if existing is not None and not _same_source(existing, ref, uri):
        raise NameClash(
            f"a model named '{target}' already exists (from {existing.source.uri}); "
            f"pull with --name OTHER, or `owl rm {target}` first"
        )
    if folder is not None or hub_folder is not None:
        if expect_digest is not None:
            raise LockMismatch(
                f"{LOCK_FILE} pins one file for '{target}', but {uri} is a model folder"
            )
        # A Hub folder is downloaded into the HF cache first; nothing is stored if that fails.
        opened = (
            download(hub_folder, settings=settings)
            if hub_folder is not None
            else nullcontext((folder, folder_source))
        )
        with opened as (path, source):
            stored = pull_folder(
                path,
                source=source,
                store=store,
                target=target,
                licensing=Licensing.given(license_sources, user=license),
                parameters=parameters,
                progress=progress,
                trust=trust,
            )
        return _trusted(stored, trust)
    if ref.kind is RefKind.FILE and ref.path is not None and ref.path.is_file():
        # Refuse a non-model file before copying it.
        if detect(ref.path) == "safetensors":
            raise ModelFormatError(
                f"{ref.path.name} is a lone safetensors file: it has no config or tokenizer. "
                f"Pull the model folder that holds it (`owl pull {ref.path.parent}`)"
            )

    restoring = existing is not None and store.discard_damaged(existing)
    fetched = fetch(
        to_fetch,
        blobs=store.blobs,
        settings=settings,
        progress=progress,
        allow_private=allow_private,
    )
    if expect_digest is not None and fetched.digest != expect_digest:
        discard(store, [fetched.digest])
        raise LockMismatch(
            f"{fetched.uri} now has {fetched.digest}, but {LOCK_FILE} pins {expect_digest}: "
            f"the model changed at its source. Nothing was stored; check the new file, then "
            f"`owl lock {target}` to accept it"
        )
    return admit(
        [FileEntry(filename=fetched.filename, digest=fetched.digest, size=fetched.size)],
        store=store,
        target=target,
        source=Source(kind=ref.kind, uri=fetched.uri, revision=fetched.revision),
        added=[fetched.digest],
        read=lambda stored: inspect(stored[fetched.filename]),
        licensing=Licensing.given(license_sources, user=license),
        card=fetched.card,
        parameters=parameters,
        rescan=restoring,
        trust=trust,
        signature=signature,
    )


def _trusted(manifest: Manifest, trust: Trust) -> Manifest:
    """A stored model, refused when the pull wants a signed one and it was not checked so."""
    if trust.require and not (manifest.signature and manifest.signature.verified):
        raise SignatureRequired(
            f"'{manifest.display_name}' is stored without a verified signature; "
            f"`owl rm {manifest.display_name}` and pull it again with --require-signature"
        )
    return manifest


def derived_message(name: str, parent: str) -> str:
    # A model owl derived (quantized, converted) has no source to download it from.
    return (
        f"'{name}' was derived by owl from '{parent}' and its file is not in the store; "
        f"derive it again from '{parent}' (e.g. `owl quantize {parent} --type …`): "
        "owl's quantization is deterministic, so it gives the same bytes"
    )


def _pull_from_catalog(
    wanted: ModelName,
    *,
    store: Store,
    settings: Settings,
    name: str | None,
    progress: Progress | None,
    allow_private: bool,
    trust: Trust,
) -> Manifest:
    entry = find_in_catalog(wanted.name) if wanted.tag == DEFAULT_TAG else None
    if entry is None:
        known = ", ".join(str(alias_name) for alias_name in aliases())
        raise ModelNotFound(
            f"model '{wanted}' is not in the store, not a built-in name ({known}) and not in "
            "owl's catalog (`owl catalog TEXT` searches it); pull a file, URL or Hub file: "
            "owl pull ./model.gguf | https://host/model.gguf | hf:Org/Repo/file.gguf"
        )
    source = entry.pull_ref()
    if source is not None:
        check_source(parse_ref(source), settings=settings, via=str(wanted))
    if source is None:
        raise ModelNotFound(
            f"'{entry.name}' ({entry.display_name}, {entry.modality} {entry.architecture}) is in "
            "owl's catalog but has nothing owl can run yet (a GGUF file, a CTranslate2 "
            "Whisper or a Piper voice); its weights are at "
            + ", ".join(f"hf:{repo}" for repo in entry.repos)
        )
    return pull(
        source,
        store=store,
        settings=settings,
        name=name or entry.name,
        license_sources={"catalog": entry.license_label},
        progress=progress,
        allow_private=allow_private,
        trust=trust,
    )


def register_embedded(store: Store, settings: Settings) -> list[Manifest]:
    """Put every built-in model that ships inside an installed package into the store.

    Runs once per OWL_HOME (a marker file remembers it), so `owl rm` of such a model sticks.
    """
    marker = store.home / ".embedded-registered"
    done = set(marker.read_text().split()) if marker.exists() else set()
    before = set(done)
    registered = []
    for alias in aliases().values():
        if not alias.offline or str(alias.name) in done:
            continue
        if store.find(alias.name) is None:
            try:
                registered.append(pull(str(alias.name), store=store, settings=settings))
            except (SourceNotFound, SourceNotAllowed):
                # Its package is not installed, or OWL_ALLOWED_SOURCES leaves it out: nothing
                # to register, and not marked done, so a later setting that allows it does.
                continue
            except OwlError as err:
                # A broken or refused package must not take `owl list` down with it; it is
                # tried again next time, and pulling it by name shows the whole error.
                log.warning("the built-in model '%s' was not registered: %s", alias.name, err)
                continue
        done.add(str(alias.name))
    if done != before:
        marker.write_text("\n".join(sorted(done)) + "\n")
    return registered


def resolve(
    ref: ModelRef | str, *, store: Store, settings: Settings, pull_missing: bool = False
) -> Manifest:
    """The manifest a reference names, for running or inspecting it.

    A store name is looked up (a built-in model inside an installed package is registered
    on first use, with no network). Any other reference is matched against the sources of
    stored models. With `pull_missing`, what is absent is pulled (catalog names too).
    """
    ref = parse_ref(ref) if isinstance(ref, str) else ref
    if ref.kind is RefKind.NAME:
        assert ref.name is not None
        manifest = store.find(ref.name)
        if manifest is not None:
            return manifest
        alias = find_alias(ref.name)
        if pull_missing or (alias is not None and alias.offline):
            return pull(ref, store=store, settings=settings)  # an alias or a catalog name
        raise ModelNotFound(store.not_found_message(ref.name))
    uri = _source_uri(ref)
    for manifest in store.list():
        if _same_source(manifest, ref, uri):
            return manifest
    if pull_missing:
        return pull(ref, store=store, settings=settings)
    raise ModelNotFound(f"{ref.raw} is not in the store; run `owl pull {ref.raw}` first")


def open_store(settings: Settings) -> Store:
    """The store under settings.home."""
    return Store(settings.home)
