"""Quantize a stored GGUF with llama.cpp's own quantizer into a new store entry, with lineage.

The quantizer is `llama_model_quantize` from the libllama inside llama-cpp-python, so the
output is exactly what llama.cpp's `llama-quantize` makes at that version. Its output is
written to a temp file in the blob folder (same filesystem), checked, hashed and renamed
into place: no copy, and never a partial blob. The new model keeps its derivation in the
manifest: `parents` names the model it came from (relation "quantized"), `info["quantize"]`
the type, the source's type and the importance matrix, if any.

Decisions:
- Requantizing (the input is already quantized, like the bundled Q4_1 SmolLM2) is allowed,
  unlike llama-quantize without --allow-requantize: it is often the only file a user has.
  The rounding errors of both quantizations add up; `info["quantize"]["requantized"]` says so
  and `owl quantize` warns. Quantize from f16/bf16 (`owl convert`) where quality matters.
- An importance matrix is a llama.cpp imatrix file (GGUF from `llama-imatrix`, or its older
  .dat format), read by owl, or one owl computed (`owl.quantize.calibrate`, llama-imatrix's
  method), handed to llama.cpp as its `llama_model_imatrix_data` array. Types marked
  "required" in types.toml are refused without one: llama.cpp's own list, plus every IQ type,
  which are designed around one.
- The new model's `source` is the store model it was derived from (kind "name", revision =
  the parent's digest), not the parent's own source: its bytes exist nowhere but here, and
  a derived model must never be "pulled again" from its parent's file or match that file's
  reference. The parent's source is kept in the lineage.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from owl.config import Settings
from owl.errors import ModelFormatError, NameClash, QuantizationError
from owl.formats import ModelInfo, inspect
from owl.quantize.imatrix import Imatrix, check_fits, load_imatrix
from owl.quantize.llamacpp import Progress, run_quantizer
from owl.quantize.quant_types import QuantType, find_type, needs_imatrix
from owl.scan.policy import require_loadable
from owl.scan.records import scan_entries
from owl.store import Manifest, ModelName, RefKind, Source, Store, parse_name
from owl.store.blobs import HashingWriter, ensure_free_space
from owl.store.manifest import FileEntry, Parent

FLOAT_TYPES = frozenset({"F32", "F16", "BF16", "F64"})
# The size check allows for what nominal bits leave out: embeddings kept at higher precision
# and k-quant rows that fall back to a larger type.
SIZE_MARGIN = 1.25


# --- into the store ------------------------------------------------------------------------


def quantize(
    manifest: Manifest,
    *,
    store: Store,
    settings: Settings,
    qtype: str,
    name: str | None = None,
    imatrix: Path | Imatrix | None = None,
    progress: Progress | None = None,
) -> Manifest:
    """Quantize the stored GGUF `manifest` to `qtype`; returns the new model's manifest.

    The new model is `name`, else MODEL:TYPE (smollm2:q8_0). Its lineage names this model
    (relation "quantized"); it carries this model's license and default sampling parameters,
    and its own scan verdict. `imatrix` is a llama-imatrix file, or an Imatrix (one that
    `owl.quantize.calibrate` computed, recorded with its calibration); types that need one
    (`QuantType.imatrix == "required"`) are refused without it. Quantizing again to the same
    type replaces the earlier result; a different model by that name raises NameClash.
    `progress(done, total)` counts tensors, from the quantizing thread.

    The model must pass the scan gate (UnsafeModel/UnverifiedModel otherwise). A failure
    (QuantizationError, InsufficientSpace, Ctrl-C) leaves the store as it was.
    """
    kind = find_type(qtype)
    if manifest.format != "gguf":
        raise QuantizationError(
            f"model '{manifest.display_name}' is {manifest.format}; llama.cpp quantizes GGUF "
            f"files: `owl convert {manifest.display_name}` first"
        )
    target = parse_name(name) if name else parse_name(f"{manifest.name}:{kind.tag}")
    replaced = _check_target(store, target, manifest, kind)
    manifest = require_loadable(manifest, store=store)
    source = store.weights_path(manifest)
    try:
        source_info = inspect(source)
    except ModelFormatError as err:
        raise QuantizationError(
            f"the stored file of '{manifest.display_name}' is damaged ({err}); `owl verify "
            f"{manifest.display_name}` checks it, and pulling it again restores it"
        ) from err
    matrix = load_imatrix(imatrix) if isinstance(imatrix, Path) else imatrix
    if matrix is None and kind.imatrix == "required":
        raise needs_imatrix(kind)
    if matrix is not None:
        check_fits(matrix, source, manifest.display_name)
    estimate = _estimate_size(kind, source_info.parameters, source)
    ensure_free_space(
        store.blobs.root, estimate, source=f"quantizing {manifest.display_name} to {kind.name}"
    )
    recipe = "\n".join([manifest.weights.digest, kind.name, matrix.digest if matrix else ""])
    key = "quantize-" + hashlib.sha256(recipe.encode()).hexdigest()[:32]
    with store.blobs.lock(key):
        tmp = store.blobs.partial(key)
        tmp.unlink(missing_ok=True)
        try:
            failure = run_quantizer(
                source,
                tmp,
                ftype=kind.ftype_value(),
                threads=settings.threads,
                matrix=matrix,
                progress=progress,
            )
            if failure is not None:
                raise _quantizer_failed(failure, manifest, kind)
            out_info = _check_output(tmp, manifest, kind)
            digest = store.blobs.commit(HashingWriter(tmp), expected=None, source=str(target))
        finally:
            tmp.unlink(missing_ok=True)
    return _store_result(
        store,
        target=target,
        parent=manifest,
        digest=digest,
        details={
            "type": kind.name,
            "from": source_info.quantization,
            "requantized": bool(set(source_info.tensor_types) - FLOAT_TYPES),
            "tensor_types": out_info.tensor_types,
            "imatrix": matrix.record() if matrix else None,
            "llama_cpp_python": _llama_cpp_version(),
        },
        out_info=out_info.summary(),
        filename=_output_filename(manifest, kind, source_info.quantization),
        replaced=replaced,
    )


def _check_target(
    store: Store, target: ModelName, parent: Manifest, kind: QuantType
) -> Manifest | None:
    """The stored model this quantization replaces (the same one made before), if any."""
    existing = store.find(target)
    if existing is None:
        return None
    same = existing.info.get("quantize", {}).get("type") == kind.name and any(
        p.relation == "quantized" and p.digest == parent.weights.digest for p in existing.parents
    )
    if same:
        return existing
    raise NameClash(
        f"a model named '{target}' already exists; quantize with --name OTHER, "
        f"or `owl rm {target}` first"
    )


def _quantizer_failed(reason: str, parent: Manifest, kind: QuantType) -> QuantizationError:
    name = parent.display_name
    if "requires an imatrix" in reason:
        return QuantizationError(
            f"llama.cpp needs an importance matrix to quantize '{name}' to {kind.name} "
            f"({reason}); compute one with --calibrate TEXT or pass one with --imatrix FILE, "
            "or choose another type, e.g. Q4_K_M"
        )
    return QuantizationError(
        f"llama.cpp could not quantize '{name}' to {kind.name}: {reason}. Nothing was stored; "
        f"`owl verify {name}` checks its file"
    )


def _estimate_size(kind: QuantType, parameters: int | None, source: Path) -> int:
    if parameters:
        return int(parameters * kind.bits / 8 * SIZE_MARGIN)
    return 2 * source.stat().st_size  # unknown size: Q8_0 of a 4-bit model is about twice it


def _check_output(path: Path, parent: Manifest, kind: QuantType) -> ModelInfo:
    """The output's ModelInfo, once its header and layout are whole (a full disk cuts it)."""
    try:
        return inspect(path)
    except ModelFormatError as err:
        raise QuantizationError(
            f"llama.cpp's {kind.name} of '{parent.display_name}' is not a whole GGUF file "
            f"({err}); nothing was stored. Is the disk full?"
        ) from err


def _output_filename(parent: Manifest, kind: QuantType, source_type: str | None) -> str:
    """SmolLM2-135M-Instruct.Q4_1.gguf → SmolLM2-135M-Instruct.Q8_0.gguf."""
    stem = re.sub(r"\.gguf$", "", parent.weights.filename, flags=re.IGNORECASE)
    if source_type:
        stem = re.sub(rf"[.\-_]{re.escape(source_type)}$", "", stem, flags=re.IGNORECASE)
    return f"{stem}.{kind.name}.gguf"


def _llama_cpp_version() -> str:
    import llama_cpp

    return str(llama_cpp.__version__)


def _store_result(
    store: Store,
    *,
    target: ModelName,
    parent: Manifest,
    digest: str,
    details: dict[str, Any],
    out_info: dict[str, Any],
    filename: str,
    replaced: Manifest | None,
) -> Manifest:
    """Scan the new blob, write its manifest; a blob that fails the scan is not kept."""
    files = [
        FileEntry(filename=filename, digest=digest, size=store.blobs.path(digest).stat().st_size)
    ]
    scans = scan_entries(store, files, model=str(target))
    record = scans[digest]
    if record.verdict != "clean":
        if digest not in store.used_digests():
            store.blobs.remove(digest)
        reason = record.error or (record.findings[0]["reason"] if record.findings else "")
        raise QuantizationError(
            f"the quantized '{target}' is {record.verdict} by owl's scan ({reason}); "
            "nothing was stored"
        )
    manifest = Manifest(
        name=target.name,
        tag=target.tag,
        format="gguf",
        files=files,
        # Its bytes exist only here: where they come from is the parent, at its digest.
        source=Source(kind=RefKind.NAME, uri=parent.display_name, revision=parent.weights.digest),
        license=parent.license,
        license_sources={"parent": parent.license} if parent.license else {},
        parents=[
            Parent(
                name=parent.display_name,
                digest=parent.weights.digest,
                relation="quantized",
                license=parent.license,
                source=parent.source,
            )
        ],
        parameters=dict(parent.parameters),
        info={**out_info, "quantize": details},
        scans=scans,
    )
    store.save(manifest)
    if replaced is not None:
        for old in {entry.digest for entry in replaced.files} - store.used_digests():
            store.blobs.remove(old)
    return manifest
