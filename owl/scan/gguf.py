"""Check a GGUF file before the engine loads it: its structure, then its chat templates.

A GGUF file holds no code, but llama.cpp trusts its counts and offsets, and its chat
template is a program the engine runs on every request. The structure is read by
owl.scan.gguf_layout with llama.cpp's own rules (anything it would refuse, or misread, is
unverified); every chat template goes to the template checker.
"""

from __future__ import annotations

import mmap
from pathlib import Path

from owl.scan.findings import Finding, Unverified
from owl.scan.gguf_layout import (
    MAGIC,
    GGUFArray,
    GGUFHeader,
    LongString,
    Reader,
    TensorInfo,
    Value,
    pad,
    read_metadata,
    read_tensor_info,
    shown,
)

TEMPLATE_KEY = "tokenizer.chat_template"
_CORRUPT = "the file is truncated or corrupt: download it again"


def read_gguf_header(path: Path, *, kv: dict[str, Value] | None = None) -> GGUFHeader:
    """Read and check the header of the GGUF file at `path`; raise Unverified if it is bad.

    Reads the metadata (arrays measured, not read) and the tensor table, and checks that
    every tensor's data lies, aligned and in order, inside the file; never reads tensor
    data. `kv`, when given, is filled as the metadata is read, so that a caller still has
    the entries before a defect (a chat template to check) when this raises.
    """
    kv = {} if kv is None else kv
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            if size <= len(MAGIC):
                raise Unverified(
                    f"the file has {size} bytes, too few for a GGUF header; {_CORRUPT}",
                    location="header",
                )
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                reader = Reader(data, size)
                version, n_tensors, alignment = read_metadata(reader, kv)
                tensors = [read_tensor_info(reader, index) for index in range(n_tensors)]
                data_offset = _check_data_layout(reader, tensors, alignment)
    except OSError as err:
        raise Unverified(f"cannot read it: {err}") from err
    return GGUFHeader(version, alignment, kv, tensors, data_offset, size)


def _check_data_layout(reader: Reader, tensors: list[TensorInfo], alignment: int) -> int:
    """Where the data section starts, once every tensor is where llama.cpp expects it."""
    names: set[str] = set()
    for tensor in tensors:
        if tensor.name in names:
            reader.where = f"tensor {shown(tensor.name)}"
            raise reader.fail(f"two tensors are named {shown(tensor.name)}")
        names.add(tensor.name)
    if not tensors:
        return reader.pos
    reader.where = "header"
    start = pad(reader.pos, alignment)
    if start > reader.size:
        raise reader.fail(
            f"the tensor data should start at byte {start:,}, past the end of the "
            f"{reader.size:,}-byte file; {_CORRUPT}"
        )
    expected = 0
    for tensor in tensors:
        reader.where = f"tensor {shown(tensor.name)}"
        if tensor.offset % alignment:
            raise reader.fail(
                f"its data offset {tensor.offset:,} is not a multiple of the file's "
                f"alignment ({alignment})"
            )
        if tensor.offset != expected:
            raise reader.fail(
                f"its data starts at offset {tensor.offset:,}, but the tensors before it end "
                f"at {expected:,}; llama.cpp requires tensors in order, without gaps or overlaps"
            )
        if start + tensor.offset + tensor.n_bytes > reader.size:
            raise reader.fail(
                f"tensor {shown(tensor.name)} claims {tensor.n_bytes:,} bytes at offset "
                f"{start + tensor.offset:,}, past the end of the {reader.size:,}-byte file; "
                f"{_CORRUPT}"
            )
        expected += pad(tensor.n_bytes, alignment)
    return start


def is_template_key(key: str) -> bool:
    """Whether a metadata key holds a chat template (the default or a named variant)."""
    return key == TEMPLATE_KEY or key.startswith(TEMPLATE_KEY + ".")


def _template_findings(kv: dict[str, Value], *, file: str, partial: bool) -> list[Finding]:
    """The template checker's findings for every chat template in `kv`.

    A template that is not text cannot be checked, so the file is unverified; when `kv` is
    what came before a defect (`partial`), the defect is the reason and this only collects.
    """
    findings: list[Finding] = []
    for key, value in kv.items():
        if not is_template_key(key):
            continue
        location = f"metadata key {shown(key)}"
        if not isinstance(value, str):
            if partial:
                continue
            raise Unverified(
                f"the chat template is {_describe(value)}, not text; owl cannot check what an "
                "engine would make of it",
                location=location,
                findings=findings,
            )
        from owl.scan.templates import check_template  # on use: most files have one at most

        try:
            findings += check_template(value, file=file, location=location)
        except Unverified as err:
            if not partial:
                raise Unverified(
                    err.reason,
                    location=err.location or location,
                    findings=[*findings, *err.findings],
                ) from err
            findings += err.findings
    return findings


def _describe(value: Value) -> str:
    if isinstance(value, bytes):
        return "bytes that are not valid UTF-8"
    if isinstance(value, LongString):
        return f"a string of {value.length:,} bytes, too long to check"
    if isinstance(value, GGUFArray):
        return f"an array of {value.count:,} items"
    return "a boolean" if isinstance(value, bool) else "a number"


def scan_gguf(path: Path, *, file: str) -> list[Finding]:
    """Check the GGUF file at `path` (called `file` in findings) before anything loads it.

    Returns the chat templates' findings; raises Unverified when the file breaks a rule of
    the format, carrying the findings of any template read before the defect.
    """
    kv: dict[str, Value] = {}
    try:
        header = read_gguf_header(path, kv=kv)
    except Unverified as err:
        findings = _template_findings(kv, file=file, partial=True)
        if not findings:
            raise
        raise Unverified(
            err.reason, location=err.location, findings=[*err.findings, *findings]
        ) from err
    return _template_findings(header.kv, file=file, partial=False)
