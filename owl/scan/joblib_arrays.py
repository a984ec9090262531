"""joblib's arrays inside a pickle stream, stepped over the way joblib.load reads them.

joblib.dump pickles each numpy array as a NumpyArrayWrapper (subclass, shape, order,
dtype, allow_mmap and, from joblib 1.2 on, numpy_array_alignment_bytes) and writes the
array right after the wrapper's BUILD: a padding-length byte and that much padding when
the wrapper has an alignment, then the raw data. An array of Python objects is instead a
pickle of the array (pickle.dump, protocol 2). joblib.load's unpickler reads those bytes
after the BUILD and goes on with the outer pickle.

The JOBLIB loader does the same without running anything: after a BUILD of a wrapper it
sizes the data from the shape and the dtype's pickled description, steps over it, or
scans the object array's pickle with the plain pickle rules. A wrapper joblib.dump would
not write, a size it cannot compute, or data past the end is Unverified.

The same file may be read by pickle.load (any loader of a plain pickle), which runs those
bytes as opcodes instead. It fails at once on a padding byte (never an opcode), but data
without padding (joblib < 1.2) may start with an opcode: then owl also walks the bytes as
pickle.load would, up to where that loader would fail.
"""

from __future__ import annotations

import math
import pickletools
import re

import numpy

import owl.scan.pickle_values as values
from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.pickle_ops import (
    EXT_OPCODES,
    GET_OPCODES,
    PICKLE,
    PUT_OPCODES,
    STRING_OPCODES,
    Damaged,
    Loader,
    Walk,
    apply_effect,
    scan_one,
)
from owl.scan.pickle_policy import Ruling, judge, names_an_import
from owl.scan.pickle_stream import OpStream, location
from owl.scan.pickle_values import MARK, OPAQUE, Dict, Instance

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
_DTYPE = "numpy.dtype"
_TYPE_CODE = re.compile(r"[A-Za-z?][0-9]*")  # how numpy pickles a dtype's type: "f8", "U5"
_MAX_DTYPE_DEPTH = 8  # structured dtypes nest; real ones are one or two levels deep
_HAS_OBJECT = 0x01  # NPY_ITEM_HASOBJECT in a dtype's flags
_MISSING = object()
# Protocol 0's text numbers, which pickle parses more loosely than pickletools does.
_TEXT_NUMBERS = frozenset({"INT", "LONG", "FLOAT", "GET", "PUT"})


def read_array(built: Instance, stream: OpStream, walk: Walk) -> list[Finding] | None:
    """After a BUILD of `built`: if it is a NumpyArrayWrapper, step over (or scan) the
    array joblib wrote after it, leaving `stream` where joblib.load goes on."""
    if built.factory.name != WRAPPER:
        return None
    file, where = walk.result.file, walk.result.where
    start = stream.tell()
    attributes = _wrapper_attributes(built, stream)
    count = _element_count(attributes.get("shape", _MISSING))
    itemsize, has_object = dtype_size(attributes.get("dtype", _MISSING))
    if has_object:
        return _object_array(stream, file=file, where=where)
    alignment = attributes.get("numpy_array_alignment_bytes")  # getattr(..., None) in joblib
    if alignment is OPAQUE:
        raise Unverified(f"cannot tell whether padding precedes the array at offset {start}")
    size = count * itemsize
    first = stream.read(1) if size or alignment is not None else b""
    if alignment is not None:  # one byte that says how much padding follows it
        size += 1 + (first[0] if first else 0)
    if start + size > stream.end:
        raise Unverified(
            f"cut off: the array at offset {start} needs {size} bytes, {stream.end - start} remain"
        )
    findings: list[Finding] = []
    # pickle.load reads the file as joblib.load does up to the first array of a pickle,
    # and goes its own way from there (or fails): later arrays it never reaches as such.
    if walk.reads == 0 and first and pickletools.code2op.get(chr(first[0])) is not None:
        findings = _as_pickle_load_reads(stream, start, walk)
    stream.skip(start + size - stream.tell())
    return findings


JOBLIB = Loader("joblib", track=True, on_build=read_array)


def _wrapper_attributes(built: Instance, stream: OpStream) -> dict:
    if built.called or built.args != () or built.attributes is None:
        raise Unverified(
            "a NumpyArrayWrapper built in a way joblib.dump never writes (called, or with "
            "a state owl cannot read): owl cannot tell where its array ends"
        )
    if stream.frame_end is not None and stream.tell() < stream.frame_end:
        # joblib commits the frame before the array; in a frame that goes on, joblib.load
        # would read the array from after the frame while the pickle goes on inside it.
        raise Unverified("a NumpyArrayWrapper whose frame goes on past it")
    return built.attributes


def _element_count(shape: object) -> int:
    if not isinstance(shape, tuple) or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise Unverified("a joblib array whose shape is not a tuple of sizes owl can read")
    return math.prod(shape)


def dtype_size(value: object, depth: int = 0) -> tuple[int, bool]:
    """(item size, holds Python objects) of a pickled numpy.dtype, as numpy would unpickle
    it; Unverified when the description is not one numpy writes or does not add up.

    numpy's __setstate__ trusts the pickled state (an "f8" whose flags say objects holds
    objects; a "V7" with element size 100 is 100 bytes), so the state must agree with the
    type code, and a structured dtype's object flag with its fields.
    """
    if depth > _MAX_DTYPE_DEPTH or not (
        isinstance(value, Instance) and value.factory.name == _DTYPE and value.builds == 1
    ):
        raise Unverified("a joblib array whose dtype is not a numpy.dtype owl can read")
    args, state = value.args, value.state
    code = args[0] if isinstance(args, tuple) and 1 <= len(args) <= 3 else None
    if not (isinstance(code, str) and _TYPE_CODE.fullmatch(code)) or not _dtype_state(state):
        raise Unverified(f"a joblib array with a dtype owl cannot read ({_shown(code)})")
    try:  # a type code alone ("f8", "U5", "V12") names no class and runs nothing
        base = numpy.dtype(code)
    except Exception:  # numpy's errors for a code it does not know
        raise Unverified(f"a joblib array with a dtype owl cannot read ({_shown(code)})") from None
    _, _, subarray, names, fields, elsize, _, flags, *_ = state
    if subarray is None and names is None and fields is None:
        if elsize not in (-1, base.itemsize) or flags != base.flags:
            raise Unverified(f"a joblib array whose dtype {code} has a state that disagrees")
        return base.itemsize, base.hasobject
    if base.kind != "V" or elsize != base.itemsize:
        raise Unverified(f"a joblib array whose structured dtype {code} does not add up")
    has_object = False
    if subarray is not None:
        if not (isinstance(subarray, tuple) and len(subarray) == 2):
            raise Unverified("a joblib array whose dtype has a subarray owl cannot read")
        has_object = dtype_size(subarray[0], depth + 1)[1]
    if fields is not None:
        if not (isinstance(fields, Dict) and fields.complete):
            raise Unverified("a joblib array whose dtype has fields owl cannot read")
        for field in fields.items.values():
            if not (isinstance(field, tuple) and len(field) in (2, 3)):
                raise Unverified("a joblib array whose dtype has a field owl cannot read")
            has_object = dtype_size(field[0], depth + 1)[1] or has_object
    if bool(flags & _HAS_OBJECT) != has_object:
        raise Unverified(f"a joblib array whose dtype {code} flags objects its fields lack")
    return base.itemsize, has_object


def _dtype_state(state: object) -> bool:
    """A state numpy writes: (3 or 4, byteorder, subarray, names, fields, elsize,
    alignment, flags[, metadata]) with integer sizes and flags."""
    return (
        isinstance(state, tuple)
        and len(state) in (8, 9)
        and state[0] in (3, 4)
        and all(isinstance(state[i], int) for i in (5, 7))
    )


def _shown(code: object) -> str:
    return repr(code) if isinstance(code, str) and len(code) < 40 else "not a type code"


def _object_array(stream: OpStream, *, file: str, where: str) -> list[Finding]:
    """An object array is pickle.load of the bytes that follow: a plain pickle, scanned."""
    start = stream.tell()
    try:
        nested = scan_one(stream, file=file, where=where, code_modules=(), loader=PICKLE)
    except Damaged as damage:
        raise Unverified(
            f"the pickle of the object array at offset {start} is damaged at offset "
            f"{damage.offset}: {damage.reason}",
            findings=damage.findings,
        ) from None
    return nested.findings


def _as_pickle_load_reads(stream: OpStream, start: int, walk: Walk) -> list[Finding]:
    """What pickle.load would import from the bytes joblib reads as the array at `start`,
    going on from where the walk of the outer pickle is (its stack, memo and protocol).

    The walk ends where pickle.load would fail or stop: a STOP, an unknown opcode, the end
    of the data, a STACK_GLOBAL short of strings, an import of a name no module can have,
    an extension code (Python registers none). A text number that pickletools refuses but
    pickle's looser parser may take is taken (as an unknown value), to be safe. Only a
    STACK_GLOBAL of values owl does not know leaves it unable to tell: Unverified.
    """
    stack, memo, protocol = list(walk.stack), dict(walk.memo), walk.protocol
    findings: list[Finding] = []
    reader = OpStream(stream.raw, start, stream.end)
    opcodes = pickletools.genops(reader)
    while True:
        offset = reader.tell()
        reader.stepped = False
        try:
            opcode, arg, _ = next(opcodes)
        except StopIteration:
            return findings
        except Exception:  # where pickletools stops, pickle.load fails too, but for:
            line_end = _text_number_end(reader, offset)
            if line_end is None:
                return findings
            stack.append(OPAQUE)  # INT, LONG, FLOAT or GET pushes; PUT may set any slot
            memo.clear()
            reader = OpStream(stream.raw, line_end, stream.end)
            opcodes = pickletools.genops(reader)
            continue
        name = opcode.name
        if name in STRING_OPCODES:
            stack.append(OPAQUE if reader.stepped else arg)
        elif name == "MEMOIZE":
            memo[len(memo)] = values.top(stack)
        elif name in PUT_OPCODES:
            memo[arg] = values.top(stack)
        elif name in GET_OPCODES:
            stack.append(memo.get(arg, OPAQUE))
        elif name == "MARK":
            stack.append(MARK)
        elif name == "PROTO":
            protocol = arg
        elif name in ("STOP", *EXT_OPCODES):
            return findings
        elif name in ("STACK_GLOBAL", "GLOBAL", "INST"):
            if name == "STACK_GLOBAL":
                if len(stack) - _last_mark(stack) < 3:
                    return findings  # stack underflow
                qualname, module = stack.pop(), stack.pop()
            else:
                module, _, qualname = arg.partition(" ")
            if not (isinstance(module, str) and isinstance(qualname, str)):
                if OPAQUE in (module, qualname) and not _known_other(module, qualname):
                    raise _undecided(start, offset)
                return findings  # STACK_GLOBAL requires str
            if not names_an_import(module, qualname):
                return findings
            ruling = judge(module, qualname, protocol, ())
            if ruling.severity is not None:
                findings.append(_runs_as_pickle(ruling, walk, start, offset))
            apply_effect(stack, "GLOBAL" if name == "STACK_GLOBAL" else name)
        else:
            apply_effect(stack, name)


def _last_mark(stack: list[object]) -> int:
    """The index of the last MARK, -1 if none: what lies above it is the current stack."""
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is MARK:
            return index
    return -1


def _known_other(*items: object) -> bool:
    """Whether one of the items is known not to be a string."""
    return any(item is not OPAQUE and not isinstance(item, str) for item in items)


def _runs_as_pickle(ruling: Ruling, walk: Walk, start: int, offset: int) -> Finding:
    return Finding(
        severity=ruling.severity or Severity.HIGH,
        check=ruling.check,
        file=walk.result.file,
        location=location(walk.result.where, offset),
        reason=f"joblib reads these bytes as the array at offset {start}, but pickle.load "
        f"runs them: it {ruling.reason}",
    )


def _text_number_end(reader: OpStream, offset: int) -> int | None:
    """Where the line of the text number pickletools refused at `offset` ends, if pickle
    might still take it (it reads a C string, up to a NUL, in base 0: "I\0junk" is 0 to
    pickle); None when the opcode there is no text number, or its line has no end."""
    reader.raw.seek(offset)
    byte = reader.raw.read(1)
    opcode = pickletools.code2op.get(chr(byte[0])) if byte else None
    if opcode is None or opcode.name not in _TEXT_NUMBERS:
        return None
    line = OpStream(reader.raw, offset + 1, reader.end).readline()
    return offset + 1 + len(line) if line.endswith(b"\n") else None


def _undecided(start: int, offset: int) -> Unverified:
    return Unverified(
        f"joblib reads the bytes at offset {start} as array data, but pickle.load would run "
        f"them as opcodes, and owl cannot tell what they do there (offset {offset})"
    )
