"""Walking one pickle's opcodes without running them: a bounded reader, a symbolic stack.

`pickletools.genops` decodes the opcodes from an OpStream, which steps over (seeks past)
arguments too long to keep, so tensor bytes stored inline are never read into memory.
`scan_one` keeps just enough of the unpickler's stack and memo to know the module and
name of each import (constant strings; anything else is opaque), asks pickle_policy.judge
about every import and records its ruling. A decoder error becomes Damaged, with what was
found before it.
"""

from __future__ import annotations

import pickletools
from dataclasses import dataclass, field
from typing import BinaryIO

from owl.scan.findings import Finding, Severity
from owl.scan.pickle_policy import judge

TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch.save file

# Arguments longer than this are stepped over (seek), not read: no module name is that
# long, and it keeps tensor bytes stored inline (BINBYTES) out of memory.
MAX_KEPT_ARGUMENT = 64 * 1024
# Protocol 0 arguments end at a newline; a line longer than this is not read into memory.
MAX_LINE = 16 * 1024 * 1024

_STRING_OPCODES = frozenset(
    "STRING BINSTRING SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8".split()
)
_PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})
_EXT_OPCODES = frozenset({"EXT1", "EXT2", "EXT4"})
_INTEGER_OPCODES = frozenset({"INT", "BININT", "LONG", "LONG1", "LONG4"})


def location(where: str, offset: int) -> str:
    """The place of an opcode at `offset`, inside `where` (a zip member, say) if given."""
    return f"{where}, opcode offset {offset}" if where else f"opcode offset {offset}"


class _Stepped(bytes):
    """Stands in for an argument too long to keep: no content, but the length it had."""

    def __new__(cls, length: int) -> _Stepped:
        self = super().__new__(cls)
        self.length = length
        return self

    def __len__(self) -> int:
        return self.length


class OpStream:
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


class Damaged(Exception):
    """A pickle that could not be decoded at `offset`; `findings` are from before it."""

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
class Pickle:
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
                location=location(self.where, hit.offset),
                reason=hit.reason + (f" ({hit.count} times)" if hit.count > 1 else ""),
            )
            for hit in self.hits.values()
        ]


# joblib writes array bytes inside the stream after this global: a decoder error then says so.
_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"


def _record_import(
    result: Pickle,
    module: str,
    qualname: str,
    protocol: int,
    offset: int,
    code_modules: tuple[str, ...],
) -> None:
    result.imported = True
    ruling = judge(module, qualname, protocol, code_modules)
    if ruling.name == _JOBLIB_WRAPPER:
        result.joblib = True
    if ruling.severity is not None:
        result.hit(ruling.name, ruling.severity, ruling.check, ruling.reason, offset)


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


def scan_one(stream: OpStream, *, file: str, where: str, code_modules: tuple[str, ...]) -> Pickle:
    """Decode one pickle up to its STOP, tracking just enough stack to resolve imports."""
    result = Pickle(file=file, where=where)
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
            raise Damaged(
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
                _record_import(result, module, qualname, protocol, offset, code_modules)
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
                _record_import(result, module, qualname, protocol, offset, code_modules)
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


def _damage_reason(error: Exception, stream: OpStream, result: Pickle) -> str:
    if stream.long_line:
        return f"a protocol 0 line longer than {MAX_LINE // 2**20} MiB, which owl does not read"
    if result.joblib:
        return (
            "joblib writes array bytes inside the pickle stream, and owl cannot read past them yet"
        )
    detail = str(error)
    detail = detail if len(detail) <= 120 else detail[:117] + "..."
    return f"the pickle is damaged or cut off ({type(error).__name__}: {detail})"
