"""ONNX models (Piper voices, exported encoders): the graph's facts, read without its tensors.

An .onnx file is one protobuf ModelProto (onnx.proto). owl reads it with its own wire reader
(onnx_wire.py) against the schema in onnx_schema.py, walking every nested message protobuf
would parse, and seeks past tensor bytes. What it keeps is what decides whether a runtime
needs anything beyond itself: the opsets, the operator domains the nodes use (in the main
graph, in subgraphs of If/Loop/Scan attributes, in training graphs and in local functions),
the functions the model defines, and every tensor whose bytes live in another file.

It is never looser than protobuf: what owl reads, `onnx.load` reads too. Nesting is bounded
(a graph nested in itself a thousand times is an error here, not a RecursionError), and so
are the messages and fields it walks, so a hostile file costs bounded time.
"""

from __future__ import annotations

import codecs
import io
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owl.errors import ModelFormatError
from owl.formats.onnx_schema import (
    GRAPH_FIELDS,
    INT,
    PACKED_WIDTH,
    SCHEMA,
    SINGULAR,
    TEXT,
    WIRES,
)
from owl.formats.onnx_wire import LEN, VARINT, Wire

MAX_BYTES = (2 << 30) - 1  # protobuf's limit; bigger models keep their tensors outside
MAX_DEPTH = 64  # message levels; protobuf's own limit is 100, so owl stops first
MAX_MESSAGES = 2_000_000  # a large graph has a few hundred thousand; Piper's has 16,000
MAX_FIELDS = 8_000_000  # Piper has 44,000; owl reads about half a million a second
MAX_IR_VERSION = 20  # onnx 1.23 writes 14, and a new one comes about once a year
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
# Every field ModelProto has, and the wire type it is written with (for sniffing).
_MODEL_WIRES = {
    number: VARINT if kind == INT else LEN for number, kind in SCHEMA["ModelProto"].items()
}
_HEAD_TEXT = (2, 3)  # producer_name and producer_version: printable when an exporter sets them
# Which child messages a parent keeps the fields of (the rest report through their own hooks).
_KEEP = frozenset({("ModelProto", 7), ("ModelProto", 8), ("TensorProto", 13)})


@dataclass(frozen=True)
class ExternalData:
    """A tensor whose bytes are in another file, as its TensorProto names them."""

    tensor: str
    location: str  # relative to the folder of the .onnx file, if the file is honest
    offset: int
    length: int | None  # None: to the end of the file


@dataclass(frozen=True)
class OnnxModel:
    ir_version: int
    opsets: dict[str, int]  # domain ("" is the default ONNX one) -> opset version
    producer: str  # e.g. "pytorch 2.0.0"
    operators: dict[str, frozenset[str]]  # domain -> the op types its nodes use
    functions: frozenset[tuple[str, str]]  # (domain, name) of each local function
    external: tuple[ExternalData, ...]
    nodes: int  # in every graph and function
    graphs: int  # the main graph, every subgraph and training graph
    tensors: int
    messages: int

    @property
    def function_domains(self) -> frozenset[str]:
        return frozenset(domain for domain, _ in self.functions)


def looks_like_onnx(head: bytes) -> bool:
    """Whether a file's first bytes start an ONNX ModelProto.

    Writers emit fields in number order, so a model begins with ir_version (field 1, a
    small varint: tag 0x08) and then another ModelProto field; torch.onnx and onnx.save
    both do. Every field whole in `head` must be a ModelProto field of the right wire type,
    the producer's name and version printable text, and a graph must start with a graph
    field, so other protobufs with a leading varint (a TensorFlow saved_model.pb) do not
    pass for ONNX.
    """
    if len(head) < 4 or head[0] != 0x08 or not 1 <= head[1] <= MAX_IR_VERSION:
        return False
    wire, pos, fields = Wire(io.BytesIO(head), len(head)), 2, 0
    try:
        while pos < len(head):
            wire.pos = pos
            tag = wire.varint(len(head))
            number, kind = tag >> 3, tag & 7
            if number == 1 or _MODEL_WIRES.get(number) != kind:
                return False
            fields += 1
            if kind == VARINT:
                wire.varint(len(head))
                pos = wire.pos
                continue
            length = wire.varint(len(head))
            body = head[wire.pos : wire.pos + length]
            if number in _HEAD_TEXT and not _printable(body):
                return False
            if number == 7 and body and not _starts_graph(body):
                return False
            pos = wire.pos + length
    except ModelFormatError:  # a field cut off by the end of `head`
        pass
    return fields > 0


def read_model(path: Path) -> OnnxModel:
    """The facts of the ONNX model at `path`; ModelFormatError, saying what is wrong, when
    it is not a whole, well-formed ModelProto."""
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise ModelFormatError(
            f"the file has {size:,} bytes; protobuf (and so ONNX) reads at most {MAX_BYTES:,} "
            "in one model, and larger ones keep their tensors in external data files"
        )
    with path.open("rb") as handle:
        walk = _Walk(Wire(handle, size, max_fields=MAX_FIELDS))
        top = walk.message("ModelProto", size, depth=1)
    ir_version = top.get(1)
    if ir_version is None or not 1 <= ir_version <= MAX_IR_VERSION:
        raise ModelFormatError(
            f"ir_version {ir_version} is not an ONNX IR version (1 to {MAX_IR_VERSION})"
        )
    if 7 not in top:
        raise ModelFormatError("the model has no graph")
    opsets = {entry.get(1, ""): _signed(entry.get(2, 0)) for entry in top.get(8, [])}
    producer = " ".join(part for part in (top.get(2, ""), top.get(3, "")) if part)
    operators: dict[str, set[str]] = {}
    for domain, op_type in walk.nodes:
        operators.setdefault(domain, set()).add(op_type)
    return OnnxModel(
        ir_version=ir_version,
        opsets=opsets,
        producer=producer,
        operators={domain: frozenset(ops) for domain, ops in operators.items()},
        functions=frozenset(walk.functions),
        external=tuple(walk.external),
        nodes=walk.nodes.total(),
        graphs=walk.graphs,
        tensors=walk.tensors,
        messages=walk.messages,
    )


class _Walk:
    """One pass over the model, keeping what the hooks in `message` collect."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.nodes: Counter[tuple[str, str]] = Counter()
        self.functions: set[tuple[str, str]] = set()
        self.external: list[ExternalData] = []
        self.graphs = self.tensors = self.messages = 0

    def message(self, kind: str, end: int, *, depth: int) -> dict[int, Any]:
        """Walk one message of type `kind` ending at `end`; its kept fields by number."""
        self.messages += 1
        if self.messages > MAX_MESSAGES:
            raise ModelFormatError(f"the model has more than {MAX_MESSAGES:,} messages")
        if depth > MAX_DEPTH:
            raise ModelFormatError(
                f"messages nest more than {MAX_DEPTH} deep (a {kind} at byte {self.wire.pos:,}); "
                "no real graph nests its subgraphs that far"
            )
        schema = SCHEMA[kind]
        kept: dict[int, Any] = {}
        once: set[int] = set()
        for number, wire, value in self.wire.fields(end):
            field = schema.get(number)
            if field is None:  # newer than owl's schema: its bytes are checked, not its meaning
                continue
            if wire not in ((LEN,) if isinstance(field, str) else WIRES[field]):
                raise ModelFormatError(
                    f"{kind} field {number} at byte {self.wire.pos:,} has wire type {wire}, "
                    "which does not fit its type"
                )
            if isinstance(field, str):
                if (kind, number) in SINGULAR:
                    if number in once:
                        raise ModelFormatError(
                            f"{kind} field {number} holds one {field} but appears twice "
                            f"(again at byte {self.wire.pos:,}), which protobuf would merge"
                        )
                    once.add(number)
                child = self.message(field, self.wire.pos + value, depth=depth + 1)
                if (kind, number) in _KEEP:
                    kept.setdefault(number, []).append(child)
            elif field == TEXT:
                kept[number] = self.wire.text(value, what=f"{kind} field {number}")
            elif field == INT:
                kept[number] = value  # the last one wins, as in protobuf
            elif field in PACKED_WIDTH and wire == LEN:
                width = PACKED_WIDTH[field]
                self.wire.packed(value, width, what=f"{kind} field {number}")
        self._collect(kind, kept)
        return kept

    def _collect(self, kind: str, kept: dict[int, Any]) -> None:
        if kind == "NodeProto":
            self.nodes[(kept.get(7, ""), kept.get(4, ""))] += 1
        elif kind == "FunctionProto":
            self.functions.add((kept.get(10, ""), kept.get(1, "")))
        elif kind == "GraphProto":
            self.graphs += 1
        elif kind == "TensorProto":
            self.tensors += 1
            # A closed proto2 enum: protobuf keeps an earlier valid value over a later unknown
            # one, so owl's "last one wins" would disagree with it; such a value is refused.
            if kept.get(14, 0) not in (0, EXTERNAL):
                raise ModelFormatError(
                    f"tensor {kept.get(8, '')[:80]!r} has data_location {kept[14]}, which is "
                    "neither DEFAULT (0) nor EXTERNAL (1)"
                )
            if kept.get(14) == EXTERNAL:
                self.external.append(_external(kept))


def _external(tensor: dict[int, Any]) -> ExternalData:
    """The external_data entries of a tensor stored outside the file, checked."""
    name = tensor.get(8, "")
    where = f"tensor {name[:80]!r}"
    info: dict[str, str] = {}
    for entry in tensor.get(13, []):
        key = entry.get(1, "")
        if key in info:  # readers disagree on which one wins; owl takes neither
            raise ModelFormatError(f"{where} gives its external data {key!r} twice")
        info[key] = entry.get(2, "")
    if "location" not in info:
        raise ModelFormatError(f"{where} is stored in external data but names no location")
    length = info.get("length")
    return ExternalData(
        tensor=name,
        location=info["location"],
        offset=_count(info.get("offset", "0"), what=f"{where}'s external data offset"),
        length=None if length is None else _count(length, what=f"{where}'s external length"),
    )


def _signed(value: int) -> int:
    """An int64 field as protobuf reads it: varints carry negatives as 64-bit two's complement."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _count(text: str, *, what: str) -> int:
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        raise ModelFormatError(f"{what} is {text[:40]!r}, not a byte count")
    return int(text)


def _printable(body: bytes) -> bool:
    try:  # a prefix cut by the end of the head may end inside a character
        text = codecs.getincrementaldecoder("utf-8")().decode(body, final=False)
    except UnicodeDecodeError:
        return False
    return text.isprintable()


def _starts_graph(body: bytes) -> bool:
    wire = Wire(io.BytesIO(body), len(body))
    try:
        tag = wire.varint(len(body))
    except ModelFormatError:
        return True  # the head ends inside the first tag: nothing to hold against it
    return tag & 7 == LEN and tag >> 3 in GRAPH_FIELDS
