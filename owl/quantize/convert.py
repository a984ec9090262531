"""convert: a Hugging Face model folder (config.json, *.safetensors, tokenizer) → GGUF in the store.

llama.cpp's own converter does the work (owl/quantize/converter.py fetches the one that
matches owl's llama.cpp); owl checks the folder first, imports the result with
`owl.store.pull` (scan, license, manifest) and records where it came from:

    Parent(name=<the folder's path>, digest=<folder digest>, relation="converted",
           license=<its model card's license>, source=<the folder>)

The folder digest stands for every file the converter reads: the sha256 of the folder's
`sha256sum`-style listing ("<hex>  <name>\\n" per top-level file, sorted by name).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from owl.config import Settings
from owl.errors import ModelFormatError, NameClash, SourceNotFound, UnsafeModel, UnverifiedModel
from owl.quantize.converter import OUTTYPES, ConversionError, ensure_converter, run_converter
from owl.store import Manifest, ModelName, RefKind, Source, Store, parse_name, parse_ref, pull
from owl.store.blobs import sha256_file
from owl.store.manifest import Parent
from owl.store.ref import name_from_stem

log = logging.getLogger(__name__)

RELATION = "converted"
CARD = "README.md"
# Keys that make transformers import Python code shipped in the folder; llama.cpp's
# converter loads tokenizers with trust_remote_code=True, so owl refuses such folders.
_CODE_KEYS = ("auto_map",)
_CODE_FILES = ("config.json", "tokenizer_config.json")

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
                f"{given!r} is not a folder here. owl convert takes a Hugging Face model "
                "folder (config.json, *.safetensors, tokenizer files); the store holds GGUF "
                f"models, which need no conversion (`owl quantize {given}` makes smaller ones)"
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
    for name in _CODE_FILES:
        if _ships_code(path / name):
            raise UnsafeModel(
                f"{path / name} names Python code of its own (auto_map), which the converter "
                "would run; owl converts only models that transformers supports without it"
            )
    return path


def _ships_code(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise ModelFormatError(f"{path} is not valid JSON ({err}); fix or remove it") from err
    return isinstance(data, dict) and any(key in data for key in _CODE_KEYS)


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
    """Convert the Hugging Face model `folder` to a GGUF of `outtype` and store it.

    `outtype` is f16, bf16, f32 or q8_0. The model is named `name` (tagged with `outtype`
    when it has no tag), else after the folder (`./SmolLM2-hf` → `smollm2-hf:f16`).
    Converting the same folder to the same name again returns the stored model; a name
    that another model has raises NameClash. `tools` is where llama.cpp's converter is
    kept (default OWL_HOME/tools); `status` hears what is happening, in words.
    """
    if outtype not in OUTTYPES:
        raise ConversionError(f"unknown outtype {outtype!r}: choose {', '.join(OUTTYPES)}")
    path = check_folder(folder)
    target = target_name(path, outtype, name)
    if status:
        status(f"hashing and scanning {path}")
    digest = folder_digest(path)
    existing = store.find(target)
    if existing is not None:
        if any(p.relation == RELATION and p.digest == digest for p in existing.parents):
            return existing
        raise NameClash(
            f"a model named '{target}' already exists (from {existing.source.uri}); "
            f"convert with --name OTHER, or `owl rm {target}` first"
        )
    scan_folder(path)
    converter = ensure_converter(tools or settings.tools_dir, status=status)
    # The converter writes next to the blobs (same disk); pull copies its output in.
    with tempfile.TemporaryDirectory(dir=store.blobs.root, prefix=".convert-") as work:
        outfile = Path(work) / f"{target.name}-{outtype.upper()}.gguf"
        if status:
            status(f"converting to {outtype} with llama.cpp's converter ({converter.version})")
        output = run_converter(converter, path, outfile, outtype=outtype)
        log.debug("converter output:\n%s", output)
        if status:
            status("scanning and storing the GGUF")
        manifest = pull(str(outfile), store=store, settings=settings, name=str(target))
    return _record_lineage(manifest, store=store, folder=path, digest=digest)


def _record_lineage(manifest: Manifest, *, store: Store, folder: Path, digest: str) -> Manifest:
    from owl.formats import inspect
    from owl.licenses.discover import find_license, license_from_card

    card_path = folder / CARD
    card = card_path.read_text(encoding="utf-8", errors="replace") if card_path.is_file() else None
    source = Source(kind=RefKind.FILE, uri=str(folder))
    chosen, sources, notes = find_license(
        gguf_metadata=inspect(store.weights_path(manifest)).metadata, card_text=card
    )
    for note in notes:
        log.warning("%s: %s", manifest.display_name, note)
    parent = Parent(
        name=str(folder),
        digest=digest,
        relation=RELATION,
        license=license_from_card(card) if card is not None else None,
        source=source,
    )
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
    "target_name",
]
