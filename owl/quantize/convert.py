"""convert: a Hugging Face model folder (config.json, *.safetensors, tokenizer) → GGUF in the store.

llama.cpp's own converter does the work (owl/quantize/converter.py fetches the one that
matches owl's llama.cpp); owl checks the folder first, imports the result with
`owl.pull` (scan, license, manifest) and records where it came from:

    Parent(name=<the folder's path>, digest=<folder digest>, relation="converted",
           license=<its model card's license>, source=<the folder>)

A model stored from a folder (`owl pull ./folder`, format "safetensors") converts from its
snapshot folder (Store.model_dir), with Parent(name=<its store name>, digest=<its weights
digest>, relation="converted", license=<its license>).

A vision-language folder (owl/quantize/vision_convert.py) becomes one model of two files:
the language model's GGUF and its projector's (mmproj).

The folder digest stands for every file the converter reads: the sha256 of the folder's
`sha256sum`-style listing ("<hex>  <name>\\n" per top-level file, sorted by name).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from owl.config import Settings
from owl.errors import ModelFormatError, NameClash, SourceNotFound, UnsafeModel, UnverifiedModel
from owl.formats.card import CARD, MAX_CARD
from owl.formats.hf_folder import check_no_remote_code, list_folder
from owl.pull import add_projector, pull
from owl.quantize.converter import OUTTYPES, ConversionError, ensure_converter, run_converter
from owl.quantize.vision_convert import convert_vision_folder, is_vision_folder
from owl.store import Manifest, ModelName, RefKind, Source, Store, parse_name, parse_ref
from owl.store.blobs import sha256_file
from owl.store.manifest import Parent
from owl.store.ref import name_from_stem

log = logging.getLogger(__name__)

RELATION = "converted"

Status = Callable[[str], None]


def folder_files(folder: Path) -> list[Path]:
    """The folder's top-level files (links followed, hidden files skipped), sorted by name."""
    return sorted(
        (path for path in folder.iterdir() if not path.name.startswith(".") and path.is_file()),
        key=lambda path: path.name,
    )


def folder_digest(folder: Path) -> str:
    """`sha256:` of the folder's listing: "<sha256 hex>  <file name>\\n" per top-level file.

    The same as `sha256sum * | sha256sum` in the folder under the C locale, when no
    file name starts with a dot.
    """
    listing = "".join(
        f"{sha256_file(path).removeprefix('sha256:')}  {path.name}\n"
        for path in folder_files(folder)
    )
    return "sha256:" + hashlib.sha256(listing.encode()).hexdigest()


def default_name(folder: Path, outtype: str) -> ModelName:
    """The store name of a conversion: the folder's name, made valid, tagged with `outtype`."""
    return ModelName(name_from_stem(folder.name, source=str(folder)).name, outtype)


def target_name(folder: Path, outtype: str, name: str | None) -> ModelName:
    """`name` as given (tagged with `outtype` when it has no tag), else default_name."""
    if name is None:
        return default_name(folder, outtype)
    parsed = parse_name(name)
    return parsed if ":" in name else ModelName(parsed.name, outtype)


def check_folder(folder: Path | str) -> Path:
    """The model folder `folder` resolved, if it is one owl converts; a clear error if not."""
    given = str(folder)
    path = Path(folder).expanduser()
    if not path.exists():
        ref = parse_ref(given)
        if ref.kind is RefKind.NAME:
            raise SourceNotFound(
                f"{given!r} is not a folder here, nor a safetensors model in the store. owl "
                "convert takes a Hugging Face model folder (config.json, *.safetensors, "
                "tokenizer files) or a stored one (`owl pull ./folder`); GGUF models need no "
                f"conversion (`owl quantize {given}` makes smaller ones)"
            )
        if ref.kind is RefKind.HF:
            raise SourceNotFound(
                "owl convert reads a local folder: download the repository first "
                f"(`hf download {ref.repo_id} --local-dir DIR`) and convert DIR"
            )
        raise SourceNotFound(f"no such folder: {path}; give a Hugging Face model folder")
    if not path.is_dir():
        raise ModelFormatError(
            f"{path} is a file; owl convert takes a Hugging Face model folder (config.json, "
            "*.safetensors, tokenizer files). A .gguf needs no conversion: `owl pull` it"
        )
    path = path.resolve()
    if not (path / "config.json").is_file():
        raise ModelFormatError(
            f"{path} is not a Hugging Face model folder: it has no config.json "
            "(owl convert needs config.json, *.safetensors and the tokenizer files)"
        )
    if not any(path.glob("*.safetensors")):
        raise ModelFormatError(
            f"{path} has no .safetensors weights; owl converts safetensors only "
            "(pickle-based .bin/.pt checkpoints can run code when loaded)"
        )
    # llama.cpp's converter loads tokenizers with trust_remote_code=True: refuse auto_map.
    check_no_remote_code(list_folder(path))
    return path


def scan_folder(folder: Path) -> None:
    """Scan the files the converter reads; UnsafeModel/UnverifiedModel when they are not clean."""
    from owl.scan import Verdict, blocking, scan

    report = scan(folder_files(folder))
    if report.verdict is Verdict.UNSAFE:
        worst = next(finding for finding in report.findings if blocking(finding, strict=False))
        raise UnsafeModel(
            f"{worst.file}: {worst.reason} ({worst.check}); owl will not convert this folder. "
            f"`owl scan {folder}` lists every finding"
        )
    if report.verdict is Verdict.UNVERIFIED:
        bad = next(entry for entry in report.files if entry.status == "unverified")
        raise UnverifiedModel(
            f"{bad.file} could not be verified ({bad.error}); owl will not convert this folder"
        )


def stored_model(model: Path | str, *, store: Store) -> Manifest | None:
    """The stored folder-format model that `model` names, when it names one (not a path here).

    A stored GGUF is refused with SourceNotFound: it needs no conversion.
    """
    if not isinstance(model, str) or Path(model).expanduser().exists():
        return None
    ref = parse_ref(model)
    if ref.kind is not RefKind.NAME or ref.name is None:
        return None
    manifest = store.find(ref.name)
    if manifest is None or manifest.format == "safetensors":
        return manifest
    raise SourceNotFound(
        f"'{manifest.display_name}' is a {manifest.format} model in the store, which needs no "
        "conversion (`owl quantize` makes smaller ones); owl convert takes a Hugging Face "
        "model folder or a stored safetensors model"
    )


def convert(
    folder: Path | str,
    *,
    store: Store,
    settings: Settings,
    outtype: str = "f16",
    name: str | None = None,
    tools: Path | None = None,
    status: Status | None = None,
) -> Manifest:
    """Convert the Hugging Face model `folder` (or a stored safetensors model) to a GGUF.

    `folder` is a folder's path, or the name of a model `owl pull ./folder` stored. `outtype`
    is f16, bf16, f32 or q8_0. The model is named `name` (tagged with `outtype` when it has
    no tag), else after the folder or stored model (`./SmolLM2-hf` → `smollm2-hf:f16`).
    Converting the same folder to the same name again returns the stored model; a name
    that another model has raises NameClash. `tools` is where llama.cpp's converter is
    kept (default OWL_HOME/tools); `status` hears what is happening, in words.

    The lineage names the folder (its path and folder digest) or the stored model (its name
    and weights digest), with relation "converted" and the license its card gives.
    """
    if outtype not in OUTTYPES:
        raise ConversionError(f"unknown outtype {outtype!r}: choose {', '.join(OUTTYPES)}")
    stored = stored_model(folder, store=store)
    if stored is not None:
        return _convert_stored(
            stored,
            store=store,
            settings=settings,
            outtype=outtype,
            name=name,
            tools=tools,
            status=status,
        )
    path = check_folder(folder)
    target = target_name(path, outtype, name)
    if status:
        status(f"hashing and scanning {path}")
    digest = folder_digest(path)
    parent = Parent(
        name=str(path),
        digest=digest,
        relation=RELATION,
        source=Source(kind=RefKind.FILE, uri=str(path)),
    )
    done = _check_target(store, target, parent, by_name=False)
    if done is not None:
        return done
    scan_folder(path)
    return _convert_into_store(
        path,
        target,
        parent,
        store=store,
        settings=settings,
        outtype=outtype,
        tools=tools,
        status=status,
    )


def _convert_stored(
    stored: Manifest,
    *,
    store: Store,
    settings: Settings,
    outtype: str,
    name: str | None,
    tools: Path | None,
    status: Status | None,
) -> Manifest:
    from owl.scan.policy import require_loadable

    target = target_name(Path(stored.name), outtype, name)
    parent = Parent(
        name=stored.display_name,
        digest=stored.weights.digest,
        relation=RELATION,
        license=stored.license,
        source=stored.source,
    )
    done = _check_target(store, target, parent, by_name=True)
    if done is not None:
        return done
    stored = require_loadable(stored, store=store)  # the scan gate, as for running it
    path = check_folder(store.model_dir(stored))
    return _convert_into_store(
        path,
        target,
        parent,
        store=store,
        settings=settings,
        outtype=outtype,
        tools=tools,
        status=status,
        parameters=stored.parameters,
    )


def _check_target(
    store: Store, target: ModelName, parent: Parent, *, by_name: bool
) -> Manifest | None:
    """The stored conversion of `parent` named `target`, None if free; NameClash if taken."""
    existing = store.find(target)
    if existing is None:
        return None
    # A folder is known by its digest wherever it lies; a stored model by name and weights.
    if any(
        p.relation == RELATION
        and p.digest == parent.digest
        and (p.name == parent.name or not by_name)
        for p in existing.parents
    ):
        return existing  # converted before: owl's conversion is deterministic
    raise NameClash(
        f"a model named '{target}' already exists (from {existing.source.uri}); "
        f"convert with --name OTHER, or `owl rm {target}` first"
    )


def _convert_into_store(
    path: Path,
    target: ModelName,
    parent: Parent,
    *,
    store: Store,
    settings: Settings,
    outtype: str,
    tools: Path | None,
    status: Status | None,
    parameters: dict | None = None,
) -> Manifest:
    converter = ensure_converter(tools or settings.tools_dir, status=status)
    # The converter writes next to the blobs (same disk); pull copies its output in.
    with tempfile.TemporaryDirectory(dir=store.blobs.root, prefix=".convert-") as work:
        outfile = Path(work) / f"{target.name}-{outtype.upper()}.gguf"
        if status:
            status(f"converting to {outtype} with llama.cpp's converter ({converter.version})")
        projector = None
        if is_vision_folder(path):
            files, output = convert_vision_folder(
                converter, path, Path(work), stem=target.name, outtype=outtype
            )
            outfile, projector = files.model, files.projector
        else:
            output = run_converter(converter, path, outfile, outtype=outtype)
        log.debug("converter output:\n%s", output)
        if status:
            status("scanning and storing the GGUF" + (" and its projector" if projector else ""))
        manifest = pull(
            str(outfile), store=store, settings=settings, name=str(target), parameters=parameters
        )
        if projector is not None:
            manifest = add_projector(manifest, str(projector), store=store, settings=settings)
    return _record_lineage(manifest, store=store, folder=path, parent=parent)


def _record_lineage(manifest: Manifest, *, store: Store, folder: Path, parent: Parent) -> Manifest:
    from owl.formats import inspect
    from owl.licenses.discover import find_license, license_from_card

    card_path = folder / CARD
    card = None
    if card_path.is_file():
        with card_path.open("rb") as handle:
            card = handle.read(MAX_CARD).decode("utf-8", errors="replace")
    if (
        parent.source is not None
        and parent.source.kind is RefKind.FILE
        and parent.name == str(folder)
    ):
        source = parent.source  # a folder converted where it is
    else:  # a stored model: derived by owl, as a quantization is
        source = Source(kind=RefKind.NAME, uri=parent.name, revision=parent.digest)
    chosen, sources, notes = find_license(
        gguf_metadata=inspect(store.weights_path(manifest)).metadata, card_text=card
    )
    for note in notes:
        log.warning("%s: %s", manifest.display_name, note)
    if parent.license is None and card is not None:
        parent = parent.model_copy(update={"license": license_from_card(card)})
    updated = manifest.model_copy(
        update={
            "source": source,
            "license": chosen,
            "license_sources": sources,
            "parents": [parent],
        }
    )
    store.save(updated)
    return updated


__all__ = [
    "OUTTYPES",
    "check_folder",
    "convert",
    "default_name",
    "folder_digest",
    "folder_files",
    "scan_folder",
    "stored_model",
    "target_name",
]
