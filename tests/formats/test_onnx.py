"""The ONNX reader (owl.formats.onnx): the real embedded Piper voice and graphs built with onnx's
helpers read whole (subgraphs, local functions, external data); every malformed file is a
ModelFormatError that names what is wrong, and the sniff tells ONNX from its neighbours."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from onnx import helper

from owl.errors import ModelFormatError
from owl.formats import onnx as reader
from owl.formats.onnx import ExternalData, looks_like_onnx, read_model
from tests.support.ct2_bytes import model_bin
from tests.support.onnx_models import (
    PIPER,
    custom_op,
    field,
    local_function,
    model,
    nested,
    save,
    weight,
)


def test_the_embedded_piper_voice_reads_whole() -> None:
    facts = read_model(PIPER)
    assert (facts.ir_version, facts.opsets, facts.producer) == (8, {"": 15}, "pytorch 2.0.0")
    assert set(facts.operators) == {""} and {"Conv", "Gather", "Range"} <= facts.operators[""]
    assert (facts.nodes, facts.graphs, facts.external, facts.functions) == (2755, 1, (), set())
    assert looks_like_onnx(PIPER.read_bytes()[:64])


def test_nodes_in_subgraphs_of_if_and_loop_are_read(tmp_path: Path) -> None:
    inner = helper.make_node("Secret", ["x"], ["y"], domain="my.ops")
    facts = read_model(save(nested(inner, levels=3), tmp_path / "m.onnx"))
    assert facts.operators == {"": {"If", "Loop"}, "my.ops": {"Secret"}}
    assert (facts.graphs, facts.nodes) == (1 + 3 * 3, 7)  # a body and two branches a level
    assert facts.opsets == {"": 18, "my.ops": 1}


def test_local_functions_and_their_nodes(tmp_path: Path) -> None:
    proto = custom_op()
    proto.functions.append(local_function())
    facts = read_model(save(proto, tmp_path / "m.onnx"))
    assert facts.functions == {("my.ops", "Secret")} and facts.function_domains == {"my.ops"}
    assert facts.operators == {"my.ops": {"Secret"}, "": {"Relu"}}  # the function's body too


def test_external_data_entries(tmp_path: Path) -> None:
    proto = model(
        [helper.make_node("Add", ["x", "w"], ["s"]), helper.make_node("Mul", ["s", "v"], ["y"])],
        initializers=[weight("w", 2), weight("v", 300)],
    )
    facts = read_model(save(proto, tmp_path / "m.onnx", external="m.onnx.data"))
    assert facts.external == (
        ExternalData(tensor="w", location="m.onnx.data", offset=0, length=8),
        ExternalData(tensor="v", location="m.onnx.data", offset=8, length=1200),
    )
    assert facts.tensors == 2


def _hand_built(graph: bytes = b"", *, ir_version: int = 8, tail: bytes = b"") -> bytes:
    return field(1, ir_version, 0) + field(7, graph) + tail


def _tensor(*entries: tuple[str, str], location: int = 1) -> bytes:
    """A graph with one initializer stored externally, with these external_data entries."""
    body = field(8, b"w") + b"".join(
        field(13, field(1, key.encode()) + field(2, value.encode())) for key, value in entries
    )
    return field(5, body + field(14, location, 0))


def _deep(levels: int) -> bytes:
    """A graph whose one node's attribute holds a graph whose one node ... `levels` times."""
    graph = b""
    for _ in range(levels):
        graph = field(1, field(4, b"If") + field(5, field(1, b"then_branch") + field(6, graph)))
    return graph


MALFORMED = {
    "truncated": (lambda: PIPER.read_bytes()[:5000], "truncated"),
    "cut-inside-a-varint": (lambda: b"\x08\x08\x3a\x85", "runs past the end"),
    "eleven-byte-varint": (lambda: b"\x08" + b"\xff" * 10 + b"\x01", "longer than 10 bytes"),
    "varint-wider-than-64-bits": (lambda: b"\x08" + b"\xff" * 9 + b"\x02", "wider than 64"),
    "length-past-the-end": (lambda: b"\x08\x08\x3a\x7f\x0a\x00", "claims 127 bytes"),
    "length-past-its-message": (
        lambda: _hand_built(field(1, b"\x22\x09Relu")),  # op_type claims 9 of 4 bytes
        "claims 9 bytes",
    ),
    "group-wire-type": (lambda: b"\x08\x08\x3b\x3c", "wire type 3"),
    "wire-type-7": (lambda: b"\x08\x08\x3f", "wire type 7"),
    "field-number-zero": (lambda: b"\x08\x08\x02\x00", "field number 0"),
    "graph-as-a-varint": (lambda: b"\x08\x08\x38\x01", "wire type 0"),
    "deep-nesting": (lambda: _hand_built(_deep(40)), "nest more than 64 deep"),
    "recursion-bomb": (lambda: _hand_built(_deep(3000)), "nest more than 64 deep"),
    "no-graph": (lambda: b"\x08\x08\x12\x03owl", "no graph"),
    "ir-version-0": (lambda: _hand_built(ir_version=0), "ir_version 0"),
    "ir-version-99": (lambda: _hand_built(ir_version=99), "ir_version 99"),
    "two-graphs": (lambda: _hand_built(tail=field(7, b"")), "appears twice"),
    "op-type-not-utf8": (lambda: _hand_built(field(1, field(4, b"\xff\xfe"))), "not UTF-8"),
    "broken-packed-dims": (lambda: _hand_built(field(5, field(1, b"\x02\x80"))), "inside a varint"),
    "packed-floats-cut": (lambda: _hand_built(field(5, field(4, bytes(6)))), "whole 4-byte"),
    "external-without-location": (lambda: _hand_built(_tensor(("offset", "0"))), "no location"),
    "external-key-twice": (
        lambda: _hand_built(_tensor(("location", "a"), ("location", "b"))),
        "'location' twice",
    ),
    "external-offset-not-a-number": (
        lambda: _hand_built(_tensor(("location", "a"), ("offset", "-1"))),
        "not a byte count",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_are_refused_with_what_is_wrong(tmp_path: Path, case: str) -> None:
    build, words = MALFORMED[case]
    path = tmp_path / "m.onnx"
    path.write_bytes(build())
    with pytest.raises(ModelFormatError, match=words):
        read_model(path)


def test_a_file_past_protobufs_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    with path.open("wb") as handle:
        handle.truncate(reader.MAX_BYTES + 1)  # sparse: nothing is written
    with pytest.raises(ModelFormatError, match="at most"):
        read_model(path)


def test_too_many_messages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reader, "MAX_MESSAGES", 100)
    path = tmp_path / "m.onnx"
    path.write_bytes(_hand_built(field(1, b"") * 200))
    with pytest.raises(ModelFormatError, match="more than 100 messages"):
        read_model(path)


def test_unknown_fields_are_skipped_like_protobuf_does(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(_hand_built(field(99, b"\xff" * 5) + field(98, 7, 0)))
    assert read_model(path).graphs == 1


@pytest.mark.parametrize(
    "head",
    [
        b"\x0a\x0b\x0a\x05<unk>\x15\x00\x00\x00\x00",  # SentencePiece: field 1, a piece
        b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00",  # pickle
        b"GGUF\x03\x00\x00\x00" + bytes(16),
        b"PK\x03\x04" + bytes(26),
        b"\x93NUMPY\x01\x00v\x00{'descr'",
        struct.pack("<Q", 40) + b'{"w":{"dtype":"F32"}}',  # safetensors
        model_bin()[:64],  # CTranslate2
        b"\x08\x01\x12\xc8\x01\x0a\x10\x0a\x05serve",  # a TensorFlow saved_model.pb
        b"\x08\x08",  # ir_version and nothing after it
        b"\x08\x08\x08\x08\x08\x08",  # ir_version again and again
        b"\x08\x08\x3a\x10\x08\x01",  # a "graph" that starts with a varint
        b"",
    ],
)
def test_other_files_do_not_look_like_onnx(head: bytes) -> None:
    assert not looks_like_onnx(head)


def test_what_exporters_write_looks_like_onnx(tmp_path: Path) -> None:
    built = save(model(), tmp_path / "m.onnx").read_bytes()
    assert built[:1] == b"\x08" and looks_like_onnx(built[:64])
    assert looks_like_onnx(PIPER.read_bytes()[:64])  # torch.onnx: ir_version, producer_name
    assert looks_like_onnx(b"\x08\x07\x12\x07pytorch\x1a\x041.13\x3a\x85\xd3")
