"""Zip archives (torch.save's format, .npz, any zip) and .npy arrays: find the pickles.

A zip runs nothing itself; what a loader unpickles from it does. torch.load unpickles
`<name>/data.pkl` and reads `<name>/data/<key>` as raw storage bytes; numpy.load runs
pickle for .npy members whose dtype holds Python objects. owl scans every member whose
content is a pickle or an .npy, whatever its name, and reads only member heads otherwise;
a member that is a zip is scanned the same way (zip_nesting: how deep, how much).
"""

from __future__ import annotations

import ast
import math
import os
import re
import struct
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy.lib.format

from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.pickles import looks_like_pickle, mislabelled, scan_pickle_stream
from owl.scan.zip_nesting import ZIP_MAGICS, Nesting, open_inner

NPY_MAGIC = b"\x93NUMPY"
# A member scanned as a pickle is read opcode by opcode to its STOP. torch's data.pkl
# holds about a kilobyte per tensor (a few MB for the largest models), so 512 MiB is
# generous for any real checkpoint, and it bounds the decompression a zip bomb can cause.
MAX_PICKLE_MEMBER = 512 * 1024 * 1024
# numpy refuses headers over 10,000 bytes unless allow_pickle; owl parses up to 1 MiB.
MAX_NPY_HEADER = 1024 * 1024
_HEAD = 64
_NPY_HEADER_FORMATS = {1: ("<H", "latin1"), 2: ("<I", "latin1"), 3: ("<I", "utf8")}
_NPY_KEYS = {"descr", "fortran_order", "shape"}
_PY2_LONG = re.compile(r"\b(\d+)L\b")  # "(3L, 4L)" in headers written by Python 2
_PICKLE_SUFFIXES = (".pkl", ".pickle")
# What zipfile raises on archives it cannot read (a bad header, a bad CRC, a bad stream).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    OSError,
    EOFError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    struct.error,
    OverflowError,
    IndexError,  # zipfile indexes into names and extra fields it has not checked
    KeyError,
)


def scan_zip(path: Path, *, file: str) -> list[Finding]:
    """Scan every pickle and .npy inside a zip (torch.save, .npz or any other zip).

    Raw torch storages are skipped; a TorchScript archive is reported as code. Raises
    Unverified when the archive or a member that must be scanned cannot be read.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            findings, pickled = _scan_archive(archive, file=file, nesting=Nesting.outermost())
    except _ZIP_ERRORS as error:
        raise Unverified(f"cannot read the zip archive: {_describe(error)}") from error
    mislabel = mislabelled(file, "a zip of pickles") if pickled else None
    return findings + ([mislabel] if mislabel else [])


def scan_npy(path: Path, *, file: str) -> list[Finding]:
    """Scan an .npy file: an object array is a pickle after the header, and is scanned.

    Arrays of plain numbers produce no findings, and their data is not read.
    """
    try:
        with path.open("rb") as raw:
            return scan_npy_stream(raw, size=os.fstat(raw.fileno()).st_size, file=file)
    except OSError as error:
        raise Unverified(f"cannot read the file: {error.strerror or error}") from error


def scan_npy_stream(raw: BinaryIO, *, size: int, file: str, where: str = "") -> list[Finding]:
    """Scan an .npy held in a seekable stream of `size` bytes (an .npz member, say)."""
    has_objects, data_offset, data_size = _npy_header(raw, where)
    if not has_objects:
        if data_size is not None and size - data_offset < data_size:
            raise Unverified(
                f"cut off: the header promises {data_size} bytes of array data, "
                f"the file has {size - data_offset}",
                location=where,
            )
        return []
    finding = Finding(
        severity=Severity.MEDIUM,
        check="npy.object-array",
        file=file,
        location=where or "header",
        reason="object array: loading it needs allow_pickle=True, which runs the pickle "
        "stored after the header",
    )
    try:
        found = scan_pickle_stream(
            raw, size=size, file=file, where=where, start=data_offset, single=True
        )
    except Unverified as error:
        error.findings.insert(0, finding)
        raise
    return [finding, *found]


def _scan_archive(
    archive: zipfile.ZipFile, *, file: str, nesting: Nesting
) -> tuple[list[Finding], bool]:
    """Findings of every member, and whether any member was a pickle."""
    infos = archive.infolist()
    names = [info.filename for info in infos]
    torch_roots = {name[: -len("/data.pkl")] for name in names if _is_torch_record(name)}
    script_roots = sorted(
        {root for root in torch_roots for name in names if name.startswith(f"{root}/code/")}
    )
    findings = [_torchscript(file, nesting.prefix + root) for root in script_roots]
    # TorchScript's own unpickler resolves these from the archive's code/ and its builtins;
    # they import no Python module, and the program is reported once above.
    code_modules = ("__torch__", "torch.jit._pickle") if script_roots else ()
    pickled = False
    for info in infos:
        if info.filename.endswith("/") or _is_raw(info.filename, torch_roots, script_roots):
            continue
        try:
            member_findings, was_pickle = _scan_member(archive, info, file, code_modules, nesting)
        except Unverified as error:
            error.findings[:0] = findings  # what earlier members showed still counts
            raise
        except _ZIP_ERRORS as error:
            raise Unverified(
                f"cannot read the member: {_describe(error)}",
                location=nesting.prefix + info.filename,
                findings=findings,
            ) from error
        findings += member_findings
        pickled = pickled or was_pickle
    return findings, pickled


def _scan_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    file: str,
    code_modules: tuple[str, ...],
    nesting: Nesting,
) -> tuple[list[Finding], bool]:
    name, where = info.filename, nesting.prefix + info.filename
    if info.flag_bits & 0x1:
        raise Unverified("the member is encrypted, so owl cannot read it", location=where)
    nesting.charge(_HEAD, where)
    with archive.open(info) as member:
        head = member.read(_HEAD)
        if head.startswith(ZIP_MAGICS):
            with open_inner(archive, info, nesting) as (inner, deeper):
                return _scan_archive(inner, file=file, nesting=deeper)
        is_npy = head.startswith(NPY_MAGIC)
        is_pickle = not is_npy and (name.endswith(_PICKLE_SUFFIXES) or looks_like_pickle(head))
        if not (is_npy or is_pickle):
            return [], False
        member.seek(0)
        if is_npy:
            return _scan_npy_member(member, info, file, nesting), False
        _check_size(info, nesting)
        found = scan_pickle_stream(
            member, size=info.file_size, file=file, where=where, code_modules=code_modules
        )
        return found, True


def _scan_npy_member(
    member: BinaryIO, info: zipfile.ZipInfo, file: str, nesting: Nesting
) -> list[Finding]:
    where = nesting.prefix + info.filename
    has_objects, _, _ = _npy_header(member, where)
    if has_objects:
        _check_size(info, nesting)
    member.seek(0)
    return scan_npy_stream(member, size=info.file_size, file=file, where=where)


def _check_size(info: zipfile.ZipInfo, nesting: Nesting) -> None:
    """A member read whole: at most MAX_PICKLE_MEMBER, and out of the nesting's budget."""
    where = nesting.prefix + info.filename
    if info.file_size > MAX_PICKLE_MEMBER:
        raise Unverified(
            f"the member holds {info.file_size} bytes of pickle; owl reads at most "
            f"{MAX_PICKLE_MEMBER // 2**20} MiB of one",
            location=where,
        )
    nesting.charge(info.file_size, where)


def _is_torch_record(name: str) -> bool:
    root, _, rest = name.partition("/")
    return bool(root) and rest == "data.pkl"


def _is_raw(name: str, torch_roots: set[str], script_roots: list[str]) -> bool:
    """Raw tensor storages (never unpickled by torch) and TorchScript source."""
    root, _, rest = name.partition("/")
    if root not in torch_roots:
        return False
    if rest.startswith("data/") and "/" not in rest[len("data/") :]:
        return True
    return root in script_roots and rest.startswith("code/") and name.endswith(".py")


def _torchscript(file: str, root: str) -> Finding:
    return Finding(
        severity=Severity.HIGH,
        check="zip.torchscript",
        file=file,
        location=f"{root}/code/",
        reason="a TorchScript program: torch.load hands it to torch.jit.load, which runs "
        "its code; owl does not check TorchScript code",
    )


def _npy_header(raw: BinaryIO, where: str) -> tuple[bool, int, int | None]:
    """(holds Python objects, where the data starts, data bytes the header promises)."""
    start = raw.tell()
    prefix = raw.read(8)
    if len(prefix) < 8 or not prefix.startswith(NPY_MAGIC):
        raise Unverified("not an .npy array (no \\x93NUMPY magic)", location=where)
    major, minor = prefix[6], prefix[7]
    if major not in _NPY_HEADER_FORMATS or minor != 0:
        raise Unverified(f"unknown .npy format version {major}.{minor}", location=where)
    length_format, encoding = _NPY_HEADER_FORMATS[major]
    length_bytes = raw.read(struct.calcsize(length_format))
    if len(length_bytes) < struct.calcsize(length_format):
        raise Unverified(".npy header cut off", location=where)
    (length,) = struct.unpack(length_format, length_bytes)
    if length > MAX_NPY_HEADER:
        raise Unverified(f".npy header of {length} bytes; owl reads at most 1 MiB", location=where)
    text = raw.read(length)
    if len(text) < length:
        raise Unverified(".npy header cut off", location=where)
    header = _parse_npy_header(text, encoding, major, where)
    try:  # numpy's own reading of the description, so "object or not" is numpy's answer
        dtype = numpy.lib.format.descr_to_dtype(header["descr"])
    except Exception as error:  # numpy parsing an untrusted description: any error = invalid
        raise Unverified(
            f".npy header has an invalid dtype: {_describe(error)}", location=where
        ) from None
    data_offset = start + 8 + len(length_bytes) + length
    shape = header["shape"]
    data_size = None
    if isinstance(shape, tuple) and all(isinstance(n, int) and n >= 0 for n in shape):
        data_size = math.prod(shape) * dtype.itemsize
    return dtype.hasobject, data_offset, data_size


def _parse_npy_header(text: bytes, encoding: str, major: int, where: str) -> dict:
    try:
        source = text.decode(encoding)
    except UnicodeDecodeError:
        raise Unverified(".npy header is not text", location=where) from None
    for attempt in (source, _PY2_LONG.sub(r"\1", source) if major < 3 else None):
        if attempt is None:
            break
        try:  # literal_eval builds literals only; it never runs code
            header = ast.literal_eval(attempt)
        except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
            continue
        if isinstance(header, dict) and set(header) == _NPY_KEYS:
            return header
        raise Unverified(
            ".npy header is not a dict of descr, fortran_order and shape", location=where
        )
    raise Unverified(".npy header is not a Python literal", location=where)


def _describe(error: BaseException) -> str:
    detail = str(error) or type(error).__name__
    return detail if len(detail) <= 120 else detail[:117] + "..."
