"""Check a safetensors file against the whole contract of the format.

A safetensors file is an 8-byte little-endian header length, a JSON header, and the
tensors' bytes. It cannot run code, but readers trust its header: a file whose header
lies (ranges that overlap, run past the end or disagree with shape and dtype; duplicate
keys that two parsers read differently) is unverified, never clean. The rules are those
of the `safetensors` reader (0.8.0), a little stricter where readers disagree.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from owl.scan.findings import Finding, Unverified

MAX_HEADER = 100_000_000  # the safetensors reader refuses larger headers
USIZE_MAX = (1 << 64) - 1
METADATA_KEY = "__metadata__"
ENTRY_KEYS = frozenset({"dtype", "shape", "data_offsets"})
# Bits per element of every dtype the safetensors 0.8.0 reader accepts.
DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}  # fmt: skip
_CORRUPT = "the file is truncated or corrupt: download it again"


def _shown(name: str, limit: int = 80) -> str:
    text = repr(name[:limit])
    return text + "…" if len(name) > limit else text


def _where(name: str) -> str:
    return f"tensor {_shown(name)}"


class _DuplicateKey(Exception):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Python keeps the last of two equal keys, other readers the first: refuse both.
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _read_header(path: Path) -> tuple[dict[str, Any], int]:
    """The parsed JSON header and the number of data bytes after it."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            if size < 8:
                raise Unverified(
                    f"the file has {size} bytes, too few for a safetensors header; {_CORRUPT}",
                    location="header",
                )
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > MAX_HEADER:
                raise Unverified(
                    f"the header claims {length:,} bytes; safetensors allows at most "
                    f"{MAX_HEADER:,}",
                    location="header",
                )
            if length > size - 8:
                raise Unverified(
                    f"the header claims {length:,} bytes but the file has only {size - 8:,} "
                    f"after the length; {_CORRUPT}",
                    location="header",
                )
            raw = handle.read(length)
    except OSError as err:
        raise Unverified(f"cannot read it: {err}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise Unverified(
            f"the header is not valid UTF-8 (byte {8 + err.start:,})", location="header"
        ) from None
    try:
        header = json.loads(text, object_pairs_hook=_object, parse_constant=_no_constant)
    except _DuplicateKey as err:
        raise Unverified(
            f"the key {_shown(str(err.args[0]))} appears twice in the header; readers "
            "disagree on which one counts",
            location="header",
        ) from None
    except (ValueError, RecursionError) as err:
        raise Unverified(f"the header is not valid JSON ({err})", location="header") from None
    if not isinstance(header, dict):
        raise Unverified("the header is not a JSON object", location="header")
    return header, size - 8 - length


def _is_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate escape ("\\ud800"), which Rust's JSON refuses
        return False
    return True


def _check_metadata(metadata: Any) -> None:
    if metadata is None:  # what the safetensors reader makes of it too
        return
    if not isinstance(metadata, dict) or not all(
        _is_text(key) and _is_text(value) for key, value in metadata.items()
    ):
        raise Unverified(
            f"{METADATA_KEY} must map text to text", location=f"metadata key {_shown(METADATA_KEY)}"
        )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= USIZE_MAX


def _tensor_range(name: str, entry: Any) -> tuple[int, int]:
    """The byte range of one tensor entry, once its shape and dtype agree with it."""
    where = _where(name)
    if not isinstance(entry, dict) or set(entry) != ENTRY_KEYS:
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise Unverified(
            f"a tensor entry must hold exactly dtype, shape and data_offsets, not {found}",
            location=where,
        )
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise Unverified(f"dtype {dtype!r} is not a safetensors dtype", location=where)
    if not isinstance(shape, list) or not all(_is_count(dim) for dim in shape):
        raise Unverified(f"shape {shape!r} is not a list of sizes", location=where)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))):
        raise Unverified(f"data_offsets {offsets!r} is not a [start, end] pair", location=where)
    start, end = offsets
    if end < start:
        raise Unverified(
            f"its byte range [{start:,}, {end:,}) ends before it starts", location=where
        )
    elements = 1
    for dim in shape:  # overflow as the reader meets it, one dimension at a time
        elements *= dim
        if elements > USIZE_MAX:
            raise Unverified(
                f"shape {shape} has more elements than a reader can count", location=where
            )
    bits = elements * DTYPE_BITS[dtype]
    if bits > USIZE_MAX or bits % 8:
        raise Unverified(
            f"{dtype} {shape} is not a whole number of bytes a reader can count", location=where
        )
    if bits // 8 != end - start:
        raise Unverified(
            f"{dtype} {shape} takes {bits // 8:,} bytes, but its byte range "
            f"[{start:,}, {end:,}) holds {end - start:,}",
            location=where,
        )
    return start, end


def _check_layout(ranges: list[tuple[int, int, str]], data_size: int) -> None:
    """Ranges must tile the data section from byte 0 to its end, in some order."""
    expected, previous = 0, ""
    for start, end, name in sorted(ranges):
        if start != expected:
            if not previous:
                reason = f"the first tensor's data starts at {start:,}, not at 0"
            elif start < expected:
                reason = f"its bytes [{start:,}, {end:,}) overlap those of {_shown(previous)}"
            else:
                reason = f"{start - expected:,} bytes after {_shown(previous)} belong to no tensor"
            raise Unverified(reason, location=_where(name))
        expected, previous = end, name
    if expected > data_size:
        raise Unverified(
            f"the tensors need {expected:,} bytes of data but the file holds {data_size:,} "
            f"after its header; {_CORRUPT}",
            location=_where(previous),
        )
    if expected < data_size:
        raise Unverified(
            f"{data_size - expected:,} bytes after the last tensor belong to no tensor",
            location="header",
        )


def scan_safetensors(path: Path, *, file: str) -> list[Finding]:
    """Check the safetensors file at `path` (called `file` in findings).

    Returns no findings for a well-formed file (it holds only numbers); raises Unverified
    when the header breaks the format's contract. Reads the header, never tensor data.
    """
    header, data_size = _read_header(path)
    ranges: list[tuple[int, int, str]] = []
    for name, entry in header.items():
        if not _is_text(name):
            raise Unverified(f"the name {_shown(name)} is not valid Unicode", location="header")
        if name == METADATA_KEY:
            _check_metadata(entry)
            continue
        ranges.append((*_tensor_range(name, entry), name))
    _check_layout(ranges, data_size)
    return []
