"""Walking one pickle's opcodes without running them, on a symbolic stack.

`pickletools.genops` decodes the opcodes from an OpStream (pickle_stream), which steps over
arguments too long to keep, so tensor bytes stored inline are never read into memory.
`scan_one` keeps just enough of the unpickler's stack and memo to know the module and
name of each import (constant strings; anything else is opaque), asks pickle_policy.judge
about every import and records its ruling. A decoder error becomes Damaged, with what was
found before it.

A Loader says who will read the pickle: its name picks the allowlist, and for formats that
put raw bytes inside the stream (joblib) it keeps more values (pickle_values) and is
called after each BUILD, to read or skip those bytes itself.
"""

from __future__ import annotations

import pickletools
from collections.abc import Callable
from dataclasses import dataclass, field

import owl.scan.pickle_values as values
from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.pickle_policy import judge
from owl.scan.pickle_stream import MAX_LINE, OpStream, location
from owl.scan.pickle_values import MARK, OPAQUE, Global, Instance

TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of a legacy torch.save file

STRING_OPCODES = frozenset(
    "STRING BINSTRING SHORT_BINSTRING UNICODE SHORT_BINUNICODE BINUNICODE BINUNICODE8".split()
)
PUT_OPCODES = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
GET_OPCODES = frozenset({"GET", "BINGET", "LONG_BINGET"})
EXT_OPCODES = frozenset({"EXT1", "EXT2", "EXT4"})
_INTEGER_OPCODES = frozenset({"INT", "BININT", "LONG", "LONG1", "LONG4"})


class Damaged(Exception):
    """A pickle that could not be decoded at `offset`; `findings` are from before it."""

    def __init__(self, reason: str, offset: int, findings: list[Finding], imported: bool):
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.findings = findings
        self.imported = imported


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
    value: object = OPAQUE  # what the pickle loads, when the loader keeps values
    extra: list[Finding] = field(default_factory=list)  # from the loader's own reading

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
        ] + self.extra


BuildHook = Callable[..., "list[Finding] | None"]


@dataclass(frozen=True)
class Loader:
    """Who reads the pickle. `name` picks the allowlist (pickle_globals.toml [allowed_in]);
    `track` keeps the values of pickle_values; `on_build(built, stream, walk)` runs after
    each BUILD of an object and returns findings when it read or skipped bytes of the
    stream itself (None when that object was not its business)."""

    name: str = "pickle"
    track: bool = False
    on_build: BuildHook | None = None


PICKLE = Loader()


# joblib writes array bytes inside the stream after this global: a decoder error then says so.
_JOBLIB_WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"


@dataclass
class Walk:
    """What scan_one knows while it walks one pickle (a Loader's hook sees it too)."""

    result: Pickle
    code_modules: tuple[str, ...]
    loader: Loader
    stack: list[object] = field(default_factory=list)
    memo: dict[int, object] = field(default_factory=dict)
    protocol: int = 0  # the unpickler starts each load at 0 and maps old names while < 3
    reads: int = 0  # how often the loader's hook read or skipped bytes of the stream

    def record_import(self, module: str, qualname: str, offset: int) -> Global:
        self.result.imported = True
        ruling = judge(module, qualname, self.protocol, self.code_modules, self.loader.name)
        if ruling.name == _JOBLIB_WRAPPER:
            self.result.joblib = True
        if ruling.severity is not None:
            self.result.hit(ruling.name, ruling.severity, ruling.check, ruling.reason, offset)
        return Global(ruling.name)


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


def scan_one(
    stream: OpStream,
    *,
    file: str,
    where: str,
    code_modules: tuple[str, ...],
    loader: Loader = PICKLE,
) -> Pickle:
    """Decode one pickle up to its STOP, tracking just enough stack to resolve imports."""
    walk = Walk(Pickle(file=file, where=where), code_modules, loader)
    result, stack, memo = walk.result, walk.stack, walk.memo
    integers: list[int] = []
    decoded = 0
    stream.frame_end = None  # each load starts outside any frame
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
        if name in _INTEGER_OPCODES and len(integers) < 2:
            integers.append(arg)
        if name in STRING_OPCODES:
            stack.append(OPAQUE if stream.stepped else arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = values.top(stack)
        elif name in PUT_OPCODES:
            memo[arg] = values.top(stack)
        elif name in GET_OPCODES:
            stack.append(memo.get(arg, OPAQUE))
        elif name == "MARK":
            stack.append(MARK)
        elif name == "DUP":
            stack.append(values.top(stack))
        elif name == "POP" and stack and stack[-1] is MARK:
            stack.pop()
        elif name == "STACK_GLOBAL":
            qualname, module = values.pop(stack), values.pop(stack)
            if isinstance(module, str) and isinstance(qualname, str):
                stack.append(walk.record_import(module, qualname, offset))
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
                stack.append(OPAQUE)
        elif name == "FRAME":
            stream.frame_end = stream.tell() + arg
        elif name in ("GLOBAL", "INST"):
            module, _, qualname = arg.partition(" ")
            imported = walk.record_import(module, qualname, offset)
            if not loader.track:
                apply_effect(stack, name)
            elif name == "GLOBAL":
                stack.append(imported)
            else:
                stack.append(values.instance_of_inst(imported.name, stack))
        elif name == "STOP":
            pass  # what it pops is what the pickle loads: kept for result.value
        elif name == "BUILD" and loader.track:
            _build(walk, stream, offset)
        elif loader.track and values.apply(stack, name, OPAQUE if stream.stepped else arg):
            pass
        else:
            if name in EXT_OPCODES:
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
                walk.protocol = arg
            apply_effect(stack, name)
        if name == "STOP":
            _check_frame_at_stop(stream, offset, result)
            # torch writes the magic number alone: PROTO, (FRAME,) LONG1, STOP.
            result.torch_magic = decoded <= 4 and integers == [TORCH_MAGIC]
            result.value = values.top(stack) if loader.track else OPAQUE
            return result


def _build(walk: Walk, stream: OpStream, offset: int) -> None:
    """BUILD with values kept: record the state, and let the loader read what follows."""
    stack, result, hook = walk.stack, walk.result, walk.loader.on_build
    state = values.pop(stack)
    built = values.top(stack)
    if not isinstance(built, Instance):
        return
    built.build(state)
    if hook is None:
        return
    try:
        found = hook(built, stream, walk)
    except Unverified as error:
        findings = result.findings + error.findings
        raise Damaged(error.reason, offset, findings, imported=True) from None
    if found is not None:  # the loader replaced the object with what it read
        result.extra += found
        stack[-1] = OPAQUE
        walk.reads += 1


def _check_frame_at_stop(stream: OpStream, offset: int, result: Pickle) -> None:
    # pickle.dump ends every frame with the STOP. A frame that goes on past it leaves the
    # next read where the loader's buffering puts it (after the STOP for some, at the
    # frame's end for others), so what follows could be read two ways.
    if stream.frame_end is not None and stream.tell() < stream.frame_end:
        reason = (
            f"the pickle stops {stream.frame_end - stream.tell()} bytes before the end of "
            "its frame; loaders disagree on where the data after it starts"
        )
        raise Damaged(reason, offset, result.findings, result.imported)


def apply_effect(stack: list[object], name: str) -> None:
    to_mark, popped, pushed = _EFFECTS[name]
    if to_mark:
        while stack and stack.pop() is not MARK:
            pass
    del stack[max(0, len(stack) - popped) :]
    stack.extend([OPAQUE] * pushed)


def _damage_reason(error: Exception, stream: OpStream, result: Pickle) -> str:
    if isinstance(error, Unverified):  # the stream's own reader refused (a size cap)
        return error.reason
    if stream.long_line:
        return f"a protocol 0 line longer than {MAX_LINE // 2**20} MiB, which owl does not read"
    if result.joblib:
        return (
            "joblib's array bytes follow a NumpyArrayWrapper here, but this pickle is not "
            "one joblib.load reads (a pickle loader fails at them)"
        )
    detail = str(error)
    detail = detail if len(detail) <= 120 else detail[:117] + "..."
    return f"the pickle is damaged or cut off ({type(error).__name__}: {detail})"
