"""Pickle-based files: read the opcodes without running them and judge every import.

Pickle runs code only through the globals it imports (GLOBAL, INST, STACK_GLOBAL and the
copyreg extension codes), so owl decodes the opcodes with the standard library's
`pickletools.genops` and judges each import against an allowlist (pickle_globals.toml).
Nothing from the file is ever imported, called or unpickled.

Why not a scanning library: picklescan's import extraction is private, reports no offsets
and calls an unknown import only "suspicious"; fickling's generic check calls a plain
torch.save state dict "likely unsafe" and its symbolic interpreter is ~3.5x slower;
modelscan trusts any import not on its denylist and pins rich<15. picklescan stays in the
tests as a second opinion: whatever it calls dangerous, owl must flag.

A file may hold several pickles back to back; all are scanned. The legacy (non-zip)
torch.save format is five pickles followed by raw storage bytes, which are not read.
A pickle file is read as joblib.load reads it (joblib_arrays): the array bytes joblib
writes after each NumpyArrayWrapper are skipped, and checked against pickle.load's reading.

This module holds the entry points (sniffing a head, a file, a stream, a mislabelled
name); pickle_ops walks one pickle's opcodes and pickle_policy judges its imports.
"""

from __future__ import annotations

import io
import os
import pickle
import pickletools
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.joblib_arrays import JOBLIB
from owl.scan.pickle_ops import PICKLE, Damaged, Loader, scan_one
from owl.scan.pickle_policy import IDENTIFIER_PATH, names_an_import, policy
from owl.scan.pickle_stream import MAX_KEPT_ARGUMENT, MAX_LINE, OpStream, location

__all__ = [
    "MAX_KEPT_ARGUMENT",
    "TORCH_LEGACY_PICKLES",
    "looks_like_pickle",
    "mislabelled",
    "scan_pickle",
    "scan_pickle_bytes",
    "scan_pickle_stream",
]

TORCH_LEGACY_PICKLES = 5  # magic, protocol, sys_info, the object, storage keys

# Opcodes a real pickle can start with: the first opcode must push something (or be
# PROTO/FRAME), else the unpickler fails at once.
_FIRST_OPCODES = frozenset(
    "PROTO FRAME MARK EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET NONE NEWTRUE NEWFALSE "
    "INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT STRING BINSTRING "
    "SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8 BINBYTES "
    "SHORT_BINBYTES BINBYTES8 BYTEARRAY8 GLOBAL PERSID".split()
)
_LENGTH_WIDTHS = {
    "BINUNICODE": 4,
    "BINBYTES": 4,
    "BINSTRING": 4,
    "BINUNICODE8": 8,
    "BINBYTES8": 8,
    "BYTEARRAY8": 8,
}


def looks_like_pickle(head: bytes) -> bool:
    """Whether `head` (the first bytes of a file; 16 will do, 64 or more is better) is a pickle.

    Protocol 2+ pickles start with PROTO; protocol 0/1 pickles have no magic, so the head
    must decode as opcodes up to its end (or a STOP), starting with an opcode that can
    begin a pickle, with at least two opcodes or one whose start is telling (a GLOBAL of a
    dotted name, a string of plausible length). Text and other binary files fail quickly.
    """
    if len(head) < 2:
        return False
    first = pickletools.code2op.get(chr(head[0]))
    if first is None or first.name not in _FIRST_OPCODES:
        return False
    if first.name == "PROTO" and head[1] > pickle.HIGHEST_PROTOCOL:
        return False
    stream = io.BytesIO(head)
    decoded = 0
    start = 0  # where the opcode being decoded starts
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            if opcode.name in ("GLOBAL", "INST") and not _names_an_import(arg):
                return False
            decoded += 1
            start = stream.tell()
        return decoded >= 2
    except Exception:  # the stdlib decoder's errors all mean "not a pickle here"
        # A decoder that ran off the end of the head only lacks bytes; one that stopped
        # inside it found something that is not a pickle.
        if stream.tell() < len(head):
            return False
    return decoded + _weight_of_cut_opcode(head[start:]) >= 2


def _weight_of_cut_opcode(rest: bytes) -> int:
    """How much an opcode cut off by the end of the head says "pickle": 0, 1 or 2."""
    opcode = pickletools.code2op.get(chr(rest[0])) if rest else None
    if opcode is None:
        return 0
    if opcode.name in ("GLOBAL", "INST"):
        *lines, partial = rest[1:].split(b"\n")
        if not all(IDENTIFIER_PATH.fullmatch(line.decode("latin-1")) for line in lines):
            return 0
        if partial and not IDENTIFIER_PATH.fullmatch(partial.decode("latin-1").rstrip(".")):
            return 0
        return 2 if lines else 1
    width = _LENGTH_WIDTHS.get(opcode.name)
    if width is None or len(rest) < 1 + width:
        return 1
    return 2 if int.from_bytes(rest[1 : 1 + width], "little") <= MAX_LINE else 0


def _names_an_import(arg: object) -> bool:
    module, _, qualname = str(arg).partition(" ")
    return names_an_import(module, qualname)


def scan_pickle(path: Path, *, file: str) -> list[Finding]:
    """Scan a file of one or more pickles (or a legacy torch.save file) for what it imports.

    Returns the findings; raises Unverified when the file cannot be read or a pickle in it
    is damaged, carrying what was found before the damage (an unsafe import found there
    still makes the file unsafe).
    """
    mislabel = mislabelled(file, "a pickle")
    named = [mislabel] if mislabel else []
    try:
        with path.open("rb") as raw:
            size = os.fstat(raw.fileno()).st_size
            return scan_pickle_stream(raw, size=size, file=file, loader=JOBLIB) + named
    except OSError as error:
        raise Unverified(f"cannot read the file: {error.strerror or error}") from error
    except Unverified as error:
        error.findings += named
        raise


def scan_pickle_bytes(data: bytes, *, file: str, where: str = "") -> list[Finding]:
    """Scan pickles held in memory (a zip member, say); `where` prefixes each location."""
    return scan_pickle_stream(io.BytesIO(data), size=len(data), file=file, where=where)


def scan_pickle_stream(
    raw: BinaryIO,
    *,
    size: int,
    file: str,
    where: str = "",
    start: int = 0,
    single: bool = False,
    code_modules: tuple[str, ...] = (),
    loader: Loader = PICKLE,
) -> list[Finding]:
    """Scan the pickles in `raw` from offset `start` to `size` (a seekable binary stream).

    `single` scans only the first pickle (what numpy.load reads after an .npy header).
    Globals under `code_modules` are resolved by a loader other than pickle (TorchScript's
    `__torch__` classes come from the archive's code/), which the caller reports once.
    `loader` is who reads the pickles (a joblib file's reader skips its array bytes).
    Offsets in locations are `raw`'s.
    """
    stream = OpStream(raw, start, size)
    findings: list[Finding] = []
    count = 0
    expected: int | None = None  # how many pickles the format has, when it says
    while stream.tell() < size and (expected is None or count < expected):
        offset = stream.tell()
        try:
            one = scan_one(stream, file=file, where=where, code_modules=code_modules, loader=loader)
        except Damaged as damage:
            findings += damage.findings
            if count and expected is None and not damage.imported:
                findings.append(_trailing(file, where, offset, size - offset))
                return findings
            place = location(where, damage.offset)
            raise Unverified(damage.reason, location=place, findings=findings) from None
        findings += one.findings
        count += 1
        if count == 1 and one.torch_magic:
            expected = TORCH_LEGACY_PICKLES
        if single:
            return findings
    if count == 0:
        raise Unverified("no pickle data", location=where)
    if expected is not None and count < expected:
        reason = f"legacy torch checkpoint ends after {count} of its {expected} pickles"
        raise Unverified(reason, location=location(where, stream.tell()), findings=findings)
    return findings


def mislabelled(file: str, content: str) -> Finding | None:
    """A finding when `file`'s name claims a format that cannot run code, else None."""
    suffix = PurePosixPath(file.replace("\\", "/")).suffix.lower()
    claimed = policy().safe_suffixes.get(suffix)
    if claimed is None:
        return None
    return Finding(
        severity=Severity.MEDIUM,
        check="file.mislabelled",
        file=file,
        location="file name",
        reason=f"named {suffix} ({claimed}, which cannot run code) but holds {content}, "
        "which can run code when loaded",
    )


def _trailing(file: str, where: str, offset: int, length: int) -> Finding:
    return Finding(
        severity=Severity.LOW,
        check="pickle.trailing-data",
        file=file,
        location=f"{where}, offset {offset}" if where else f"offset {offset}",
        reason=f"{length} bytes after the last pickle are not a complete pickle; "
        "pickle.load stops before them",
    )
