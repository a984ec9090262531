"""Tar archives: torch.save's oldest format (before torch 0.4), and any tar of pickles.

torch.load opens a file as a tar before anything else (torch/serialization.py,
legacy_load). It reads the member `storages` (a pickled count, then per storage a pickled
(key, location, storage type), an int64 element count and that many elements of raw
bytes, then a pickled list of views), `tensors` (a pickled count, then per tensor a
pickled (key, storage key, type) and raw: an int32 ndim, 4 bytes, ndim int64 sizes, ndim
int64 strides, an int64 offset) and `pickle` (the object, one pickle); `sys_info`, a
pickle, it never reads. owl scans every pickle of those layouts with the pickle rules,
steps over the raw parts by the sizes torch would read, and scans any other member that
is a pickle.

tarfile reads the archive over the file; nothing is extracted: members are read as
streams. Links, devices and names that leave the folder they are extracted into (torch
extracts `storages` and `tensors` into a temporary folder) are findings. An extended
header over MAX_HEADER bytes, more than MAX_MEMBERS members or a pickle member over the
zip limit is Unverified.
"""

from __future__ import annotations

import tarfile
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from owl.scan.archives import MAX_PICKLE_MEMBER
from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.pickle_ops import Damaged, Loader, scan_one
from owl.scan.pickle_stream import OpStream, location
from owl.scan.pickle_values import Global
from owl.scan.pickles import looks_like_pickle, mislabelled, scan_pickle, scan_pickle_stream

MAX_MEMBERS = 10_000  # torch's tar has four; a real tar of pickles far fewer than this
MAX_HEADER = 1024 * 1024  # a pax or GNU long-name header is a path, not megabytes
_BLOCK = 512
_TRACKED = Loader(track=True)  # torch reads counts and storage types from the pickles
_STORAGE_BYTES = {
    "BFloat16": 2, "Bool": 1, "Byte": 1, "Char": 1, "ComplexDouble": 16, "ComplexFloat": 8,
    "Double": 8, "Float": 4, "Half": 2, "Int": 4, "Long": 8, "QInt32": 4, "QInt8": 1,
    "QUInt2x4": 1, "QUInt4x2": 1, "QUInt8": 1, "Short": 2,
}  # fmt: skip
# Element sizes by storage type; checkpoints saved on a GPU name torch.cuda's types.
ELEMENT_SIZES = {
    f"{module}.{kind}Storage": size
    for kind, size in _STORAGE_BYTES.items()
    for module in ("torch", "torch.cuda")
}
_TAR_ERRORS = (tarfile.TarError, OSError, EOFError, ValueError, UnicodeError, OverflowError)


def looks_like_tar(path: Path) -> bool:
    """Whether the file opens as a tar: its first block is a header with a valid checksum.

    The ustar magic is not required: tarfile (and so torch.load) reads old v7 tars without
    it, and a file torch reads as a tar must be checked as one.
    """
    with path.open("rb") as handle:
        block = handle.read(_BLOCK)
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except (tarfile.HeaderError, ValueError, OverflowError, UnicodeError):
        return False
    return True


def scan_tar(path: Path, *, file: str) -> list[Finding]:
    """Scan every pickle in a tar (torch's legacy layout understood) and its members' kinds.

    A file that is also a pickle from its first byte (a polyglot: torch.load reads the
    tar, pickle.load the pickle) is scanned both ways.
    """
    findings: list[Finding] = []
    pickled = False
    try:
        with path.open("rb") as raw, tarfile.open(fileobj=_CappedReads(raw), mode="r:") as tar:
            count = 0
            while (member := tar.next()) is not None:
                count += 1
                if count > MAX_MEMBERS:
                    raise Unverified(f"more than {MAX_MEMBERS} members; owl reads no more")
                found, was_pickle = _scan_member(tar, member, file)
                findings += found
                pickled = pickled or was_pickle
            head = _first_bytes(raw)
    except Unverified as error:
        error.findings[:0] = findings
        raise
    except _TAR_ERRORS as error:
        raise Unverified(f"cannot read the tar archive: {error}", findings=findings) from None
    if looks_like_pickle(head):
        try:
            findings += scan_pickle(path, file=file)
        except Unverified as error:
            error.findings[:0] = findings
            raise
    mislabel = mislabelled(file, "a tar of pickles") if pickled else None
    return findings + ([mislabel] if mislabel else [])


def _first_bytes(raw: BinaryIO) -> bytes:
    raw.seek(0)
    return raw.read(64)


class _CappedReads:
    """The file as tarfile reads it, refusing a single read of more than MAX_HEADER bytes:
    tarfile reads a pax or long-name header whole, whatever size it claims."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0 or n > MAX_HEADER:
            raise Unverified(
                f"a tar header (pax or long name) of {n} bytes; owl reads at most "
                f"{MAX_HEADER // 1024} KiB of one"
            )
        return self._raw.read(n)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def seekable(self) -> bool:
        return True


def _scan_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, file: str
) -> tuple[list[Finding], bool]:
    name = member.name
    unsafe = _unsafe(member, file)
    if unsafe or member.isdir():
        return [unsafe] if unsafe else [], False
    stream = tar.extractfile(member)  # regular files, and unknown types tar extracts as such
    if stream is None:
        return [], False
    with stream:
        head = stream.read(64)
        stream.seek(0)
        try:
            if name == "storages":
                return _storages(stream, member.size, file), True
            if name == "tensors":
                return _tensors(stream, member.size, file), True
            if not (name == "pickle" or name.endswith(".pkl") or looks_like_pickle(head)):
                return [], False
            if member.size > MAX_PICKLE_MEMBER:
                raise Unverified(
                    f"the member holds {member.size} bytes of pickle; owl reads at most "
                    f"{MAX_PICKLE_MEMBER // 2**20} MiB of one",
                    location=name,
                )
            return scan_pickle_stream(stream, size=member.size, file=file, where=name), True
        except _TAR_ERRORS as error:
            raise Unverified(f"cannot read the member: {error}", location=name) from None


def _unsafe(member: tarfile.TarInfo, file: str) -> Finding | None:
    if member.issym() or member.islnk():
        what = f"a link to {member.linkname!r}: extracting it (torch extracts storages and "
        what += "tensors) makes a path that reads or writes elsewhere"
    elif member.ischr() or member.isblk() or member.isfifo():
        what = "a device or pipe: extracting it makes one, and reading it may never end"
    elif _escapes(member.name):
        what = "a name that leaves the folder it is extracted into"
    else:
        return None
    return Finding(
        severity=Severity.HIGH,
        check="tar.unsafe-member",
        file=file,
        location=member.name,
        reason=f"{what}; a checkpoint needs none",
    )


def _escapes(name: str) -> bool:
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or (len(name) > 1 and name[1] == ":")


def _storages(stream: BinaryIO, size: int, file: str) -> list[Finding]:
    """torch's `storages`: a count, then (pickled key, location, type; raw data) each."""
    ops = OpStream(stream, 0, size)
    found: list[Finding] = []
    count = _pickled_value(ops, file, "storages", found)
    if not isinstance(count, int):
        raise _layout("storages", "does not start with a pickled storage count", ops, found)
    for index in range(max(count, 0)):
        args = _pickled_value(ops, file, "storages", found)
        kind = args[2] if isinstance(args, tuple) and len(args) == 3 else None
        element = ELEMENT_SIZES.get(kind.name) if isinstance(kind, Global) else None
        if element is None:
            why = f"storage {index} is not (key, location, a storage type torch knows)"
            raise _layout("storages", why, ops, found)
        elements = int.from_bytes(_raw(ops, 8, "storages", found), "little", signed=True)
        _skip(ops, elements * element, "storages", found)
    _pickled_value(ops, file, "storages", found)  # the views
    return found + _rest(stream, ops, size, file, "storages")


def _tensors(stream: BinaryIO, size: int, file: str) -> list[Finding]:
    """torch's `tensors`: a count, then (pickled key, storage, type; raw sizes) each."""
    ops = OpStream(stream, 0, size)
    found: list[Finding] = []
    count = _pickled_value(ops, file, "tensors", found)
    if not isinstance(count, int):
        raise _layout("tensors", "does not start with a pickled tensor count", ops, found)
    for _ in range(max(count, 0)):
        _pickled_value(ops, file, "tensors", found)
        ndim = int.from_bytes(_raw(ops, 4, "tensors", found), "little", signed=True)
        _raw(ops, 4, "tensors", found)  # torch skips it: ndim was once 8 bytes
        _skip(ops, 16 * ndim + 8, "tensors", found)  # sizes, strides, offset
    return found + _rest(stream, ops, size, file, "tensors")


def _pickled_value(ops: OpStream, file: str, where: str, found: list[Finding]) -> object:
    """Scan one pickle, adding its findings to `found`; what it loads, as far as known."""
    try:
        one = scan_one(ops, file=file, where=where, code_modules=(), loader=_TRACKED)
    except Damaged as damage:
        found += damage.findings
        place = location(where, damage.offset)
        raise Unverified(damage.reason, location=place, findings=found) from None
    found += one.findings
    return one.value


def _raw(ops: OpStream, n: int, where: str, found: list[Finding]) -> bytes:
    data = ops.read(n)
    if len(data) < n:
        raise _layout(where, f"cut off inside {n} raw bytes torch reads", ops, found)
    return data


def _skip(ops: OpStream, n: int, where: str, found: list[Finding]) -> None:
    if n < 0 or ops.tell() + n > ops.end:
        left = ops.end - ops.tell()
        raise _layout(where, f"promises {n} raw bytes where {left} remain", ops, found)
    ops.skip(n)


def _rest(stream: BinaryIO, ops: OpStream, size: int, file: str, where: str) -> list[Finding]:
    """torch stops reading the member here; whatever follows is scanned as pickles."""
    if ops.tell() >= size:
        return []
    return scan_pickle_stream(stream, size=size, file=file, where=where, start=ops.tell())


def _layout(where: str, why: str, ops: OpStream, found: list[Finding]) -> Unverified:
    return Unverified(
        f"not torch's {where} layout: {why}",
        location=f"{where}, offset {ops.tell()}",
        findings=found,
    )
