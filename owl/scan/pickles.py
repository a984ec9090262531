"""Pickle-based files: read the opcodes without running them and judge every import.

Pickle runs code only through the globals it imports (GLOBAL, INST, STACK_GLOBAL and the
copyreg extension codes), so owl decodes the opcodes with the standard library's
`pickletools.genops` and judges each import against an allowlist (pickle_globals.toml).
Nothing from the file is ever imported, called or unpickled.

A file may hold several pickles back to back; all are scanned. The legacy (non-zip)
torch.save format is five pickles followed by raw storage bytes, which are not read.
"""

from __future__ import annotations

import _compat_pickle
import io
import os
import pickle
import pickletools
import re
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from owl.scan.findings import Finding, Severity, Unverified

TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch.save file
TORCH_LEGACY_PICKLES = 5  # magic, protocol, sys_info, the object, storage keys

# Arguments longer than this are stepped over (seek), not read: no module name is that
# long, and it keeps tensor bytes stored inline (BINBYTES) out of memory.
MAX_KEPT_ARGUMENT = 64 * 1024
# Protocol 0 arguments end at a newline; a line longer than this is not read into memory.
MAX_LINE = 16 * 1024 * 1024

_TABLE = Path(__file__).with_name("pickle_globals.toml")
_IDENTIFIER_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
# Opcodes a real pickle can start with: the first opcode must push something (or be
# PROTO/FRAME), else the unpickler fails at once.
_FIRST_OPCODES = frozenset(
    "PROTO FRAME MARK EMPTY_TUPLE EMPTY_LIST EMPTY_DICT EMPTY_SET NONE NEWTRUE NEWFALSE "
    "INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT STRING BINSTRING "
    "SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8 BINBYTES "
    "SHORT_BINBYTES BINBYTES8 BYTEARRAY8 GLOBAL PERSID".split()
)
_STRING_OPCODES = frozenset(
    "STRING BINSTRING SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8".split()
)
_PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})
_EXT_OPCODES = frozenset({"EXT1", "EXT2", "EXT4"})
_INTEGER_OPCODES = frozenset({"INT", "BININT", "LONG", "LONG1", "LONG4"})
_LENGTH_WIDTHS = {
    "BINUNICODE": 4,
    "BINBYTES": 4,
    "BINSTRING": 4,
    "BINUNICODE8": 8,
    "BINBYTES8": 8,
    "BYTEARRAY8": 8,
}


@dataclass(frozen=True)
class _Policy:
    allowed: frozenset[str]
    critical_modules: dict[str, str]
    critical_names: dict[str, str]
    critical_attributes: dict[str, str]
    high_names: dict[str, str]
    safe_suffixes: dict[str, str]


@cache
def _policy() -> _Policy:
    with _TABLE.open("rb") as table:
        data = tomllib.load(table)
    critical = data["critical"]
    return _Policy(
        allowed=frozenset(data["allowed"]),
        critical_modules=critical["modules"],
        critical_names=critical["names"],
        critical_attributes=critical["attributes"],
        high_names=data["high"]["names"],
        safe_suffixes=data["safe_suffixes"],
    )


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
        if not all(_IDENTIFIER_PATH.fullmatch(line.decode("latin-1")) for line in lines):
            return 0
        if partial and not _IDENTIFIER_PATH.fullmatch(partial.decode("latin-1").rstrip(".")):
            return 0
        return 2 if lines else 1
    width = _LENGTH_WIDTHS.get(opcode.name)
    if width is None or len(rest) < 1 + width:
        return 1
    return 2 if int.from_bytes(rest[1 : 1 + width], "little") <= MAX_LINE else 0


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
            return scan_pickle_stream(raw, size=size, file=file) + named
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
) -> list[Finding]:
    """Scan the pickles in `raw` from offset `start` to `size` (a seekable binary stream).

    `single` scans only the first pickle (what numpy.load reads after an .npy header).
    Globals under `code_modules` are resolved by a loader other than pickle (TorchScript's
    `__torch__` classes come from the archive's code/), which the caller reports once.
    Offsets in locations are `raw`'s.
    """
    stream = _OpStream(raw, start, size)
    findings: list[Finding] = []
    count = 0
    expected: int | None = None  # how many pickles the format has, when it says
    while stream.tell() < size and (expected is None or count < expected):
        offset = stream.tell()
        try:
            one = _scan_one(stream, file=file, where=where, code_modules=code_modules)
        except _Damaged as damage:
            findings += damage.findings
            if count and expected is None and not damage.imported:
                findings.append(_trailing(file, where, offset, size - offset))
                return findings
            location = _location(where, damage.offset)
            raise Unverified(damage.reason, location=location, findings=findings) from None
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
        raise Unverified(reason, location=_location(where, stream.tell()), findings=findings)
    return findings


def mislabelled(file: str, content: str) -> Finding | None:
    """A finding when `file`'s name claims a format that cannot run code, else None."""
    suffix = PurePosixPath(file.replace("\\", "/")).suffix.lower()
    claimed = _policy().safe_suffixes.get(suffix)
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


def _location(where: str, offset: int) -> str:
    return f"{where}, opcode offset {offset}" if where else f"opcode offset {offset}"


def _trailing(file: str, where: str, offset: int, length: int) -> Finding:
    return Finding(
        severity=Severity.LOW,
        check="pickle.trailing-data",
        file=file,
        location=f"{where}, offset {offset}" if where else f"offset {offset}",
        reason=f"{length} bytes after the last pickle are not a complete pickle; "
        "pickle.load stops before them",
    )


class _Stepped(bytes):
    """Stands in for an argument too long to keep: no content, but the length it had."""

    def __new__(cls, length: int) -> _Stepped:
        self = super().__new__(cls)
        self.length = length
        return self

    def __len__(self) -> int:
        return self.length


class _OpStream:
    """What genops reads from: [start, end) of `raw`, long arguments stepped over."""

    def __init__(self, raw: BinaryIO, start: int, end: int) -> None:
        self._raw = raw
        self._pos = start
        self._end = end
        self.stepped = False  # the last argument was too long to keep
        self.long_line = False
        raw.seek(start)

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        left = self._end - self._pos
        n = left if n is None or n < 0 else min(n, left)
        if n > MAX_KEPT_ARGUMENT:
            self._pos += n
            self._raw.seek(self._pos)
            self.stepped = True
            return _Stepped(n)
        data = self._raw.read(n)
        self._pos += len(data)
        return data

    def readline(self, limit: int = -1) -> bytes:
        data = self._raw.readline(min(self._end - self._pos, MAX_LINE))
        self._pos += len(data)
        self.long_line = len(data) == MAX_LINE and not data.endswith(b"\n")
        return data


class _Damaged(Exception):
    def __init__(self, reason: str, offset: int, findings: list[Finding], imported: bool):
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.findings = findings
        self.imported = imported


_MARK = object()  # a MARK on the symbolic stack
_OPAQUE = object()  # any value that is not a constant string


@dataclass
class _Hit:
    severity: Severity
    check: str
    reason: str
    offset: int
    count: int = 1


@dataclass
class _Pickle:
    """What one pickle imported, as findings, each kept once with its first offset."""

    file: str
    where: str
    hits: dict[tuple[str, str], _Hit] = field(default_factory=dict)
    imported: bool = False
    joblib: bool = False
    torch_magic: bool = False

    def hit(self, key: str, severity: Severity, check: str, reason: str, offset: int) -> None:
        found = self.hits.get((check, key))
        if found:
            found.count += 1
        else:
            self.hits[(check, key)] = _Hit(severity, check, reason, offset)

    @property
    def findings(self) -> list[Finding]:
        return [
            Finding(
                severity=hit.severity,
                check=hit.check,
                file=self.file,
                location=_location(self.where, hit.offset),
                reason=hit.reason + (f" ({hit.count} times)" if hit.count > 1 else ""),
            )
            for hit in self.hits.values()
        ]


def _stack_effects() -> dict[str, tuple[bool, int, int]]:
    """Per opcode: (pops to a MARK, items popped besides, items pushed), from pickletools."""
    effects = {}
    for opcode in pickletools.opcodes:
        before, after = opcode.stack_before, opcode.stack_after
        if pickletools.markobject in before:
            effects[opcode.name] = (True, before.index(pickletools.markobject), len(after))
        else:
            effects[opcode.name] = (False, len(before), len(after))
    return effects


_EFFECTS = _stack_effects()


def _scan_one(
    stream: _OpStream, *, file: str, where: str, code_modules: tuple[str, ...]
) -> _Pickle:
    """Decode one pickle up to its STOP, tracking just enough stack to resolve imports."""
    result = _Pickle(file=file, where=where)
    stack: list[object] = []
    memo: dict[int, object] = {}
    protocol = 0  # the unpickler starts each load at 0 and maps old names while < 3
    integers: list[int] = []
    decoded = 0
    opcodes = pickletools.genops(stream)
    while True:
        offset = stream.tell()
        stream.stepped = False
        try:
            opcode, arg, _ = next(opcodes)
        except StopIteration:
            return result
        except Exception as error:  # any error of the stdlib decoder is damage at `offset`
            raise _Damaged(
                _damage_reason(error, stream, result), offset, result.findings, result.imported
            ) from None
        name = opcode.name
        decoded += 1
        if name in _STRING_OPCODES:
            stack.append(_OPAQUE if stream.stepped else arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = _top(stack)
        elif name in _PUT_OPCODES:
            memo[arg] = _top(stack)
        elif name in _GET_OPCODES:
            stack.append(memo.get(arg, _OPAQUE))
        elif name == "MARK":
            stack.append(_MARK)
        elif name == "DUP":
            stack.append(_top(stack))
        elif name == "POP" and stack and stack[-1] is _MARK:
            stack.pop()
        elif name == "STACK_GLOBAL":
            qualname, module = _pop(stack), _pop(stack)
            if isinstance(module, str) and isinstance(qualname, str):
                _judge(result, module, qualname, protocol, offset, code_modules)
            else:
                result.imported = True
                result.hit(
                    "",
                    Severity.CRITICAL,
                    "pickle.computed-import",
                    "imports a name computed while loading (STACK_GLOBAL on values that "
                    "are not constant strings), a way to hide what it imports",
                    offset,
                )
            stack.append(_OPAQUE)
        else:
            if name in ("GLOBAL", "INST"):
                module, _, qualname = arg.partition(" ")
                _judge(result, module, qualname, protocol, offset, code_modules)
            elif name in _EXT_OPCODES:
                result.imported = True
                result.hit(
                    str(arg),
                    Severity.HIGH,
                    "pickle.extension-import",
                    f"imports through copyreg's extension registry (code {arg}), "
                    "which hides the name it imports",
                    offset,
                )
            elif name == "PROTO":
                protocol = arg
            elif name in _INTEGER_OPCODES and len(integers) < 2:
                integers.append(arg)
            _apply_effect(stack, name)
        if name == "STOP":
            # torch writes the magic number alone: PROTO, (FRAME,) LONG1, STOP.
            result.torch_magic = decoded <= 4 and integers == [TORCH_MAGIC]
            return result


def _top(stack: list[object]) -> object:
    """The value on top, as far as the unpickler's stack above the last MARK has one."""
    return stack[-1] if stack and stack[-1] is not _MARK else _OPAQUE


def _pop(stack: list[object]) -> object:
    return stack.pop() if stack and stack[-1] is not _MARK else _OPAQUE


def _apply_effect(stack: list[object], name: str) -> None:
    to_mark, popped, pushed = _EFFECTS[name]
    if to_mark:
        while stack and stack.pop() is not _MARK:
            pass
    del stack[max(0, len(stack) - popped) :]
    stack.extend([_OPAQUE] * pushed)


def _damage_reason(error: Exception, stream: _OpStream, result: _Pickle) -> str:
    if stream.long_line:
        return f"a protocol 0 line longer than {MAX_LINE // 2**20} MiB, which owl does not read"
    if result.joblib:
        return (
            "joblib writes array bytes inside the pickle stream, and owl cannot read past them yet"
        )
    detail = str(error)
    detail = detail if len(detail) <= 120 else detail[:117] + "..."
    return f"the pickle is damaged or cut off ({type(error).__name__}: {detail})"


def _names_an_import(arg: object) -> bool:
    module, _, qualname = str(arg).partition(" ")
    return bool(_IDENTIFIER_PATH.fullmatch(module) and _IDENTIFIER_PATH.fullmatch(qualname))


def _judge(
    result: _Pickle,
    module: str,
    qualname: str,
    protocol: int,
    offset: int,
    code_modules: tuple[str, ...],
) -> None:
    """Record one import: nothing if allowed, else a critical or high finding."""
    result.imported = True
    written = f"{module}.{qualname}"
    if protocol < 3:  # what pickle itself does for Python 2 names (fix_imports)
        if (module, qualname) in _compat_pickle.NAME_MAPPING:
            module, qualname = _compat_pickle.NAME_MAPPING[(module, qualname)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    full = f"{module}.{qualname}"
    if full == "joblib.numpy_pickle.NumpyArrayWrapper":
        result.joblib = True
    policy = _policy()
    if full in policy.allowed or any(_under(module, code) for code in code_modules):
        return
    label = full if full == written else f"{full} (written {written})"
    why = _critical_reason(module, qualname, policy)
    if why:
        reason = f"imports {label}, which {why}"
        result.hit(full, Severity.CRITICAL, "pickle.dangerous-global", reason, offset)
        return
    why = policy.high_names.get(
        full, "model files do not need; loading the file imports it and may call it"
    )
    result.hit(
        full, Severity.HIGH, "pickle.unknown-global", f"imports {label}, which {why}", offset
    )


def _under(module: str, parent: str) -> bool:
    return module == parent or module.startswith(parent + ".")


def _critical_reason(module: str, qualname: str, policy: _Policy) -> str | None:
    full = f"{module}.{qualname}"
    if full in policy.critical_names:
        return policy.critical_names[full]
    for parent, why in policy.critical_modules.items():
        if _under(module, parent):
            return why
    # Protocol 4 resolves a dotted name attribute by attribute, so "os.system" under an
    # allowed module, "Path.write_text" or "load.__globals__" reach what the module name
    # alone does not show.
    attributes = qualname.split(".") if "." in qualname else []
    for attribute in attributes:
        if attribute.startswith("__") and attribute.endswith("__"):
            return (
                f"reaches the attribute {attribute}, a known way from a harmless object "
                "to os or eval"
            )
        if attribute in policy.critical_modules:
            return policy.critical_modules[attribute]
        if attribute in policy.critical_attributes:
            return policy.critical_attributes[attribute]
    return None
