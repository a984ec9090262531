"""Fuzz the ONNX reader and checker: whatever the bytes, findings or Unverified come out, and
nothing else. A file owl passes is one `onnx.load` reads too (owl is never more permissive
than the format's own reader), with the same facts: opsets, operators, functions, tensors
and external data. Generated graphs get exactly the findings their making calls for."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import (
    AttributeProto,
    GraphProto,
    ModelProto,
    NodeProto,
    SparseTensorProto,
    TensorProto,
    helper,
)

from owl.formats.onnx import read_model
from owl.scan.findings import Finding, Unverified
from owl.scan.onnx import builtin_domains, scan_onnx
from tests.support.onnx_models import (
    custom_op,
    field,
    local_function,
    nested,
    save,
    varint,
    weight,
)

# Derandomized: CI runs the same examples every time, so a fuzz test cannot fail at random.
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
CHECKS = {"onnx.custom-op", "onnx.external-data-escape"}


def _real() -> bytes:
    """A small model with a bit of everything: a subgraph, a function, a Constant tensor."""
    proto = nested(helper.make_node("Secret", ["x"], ["y"], domain="my.ops"), levels=1)
    proto.functions.append(local_function("my.ops", "Secret"))
    proto.graph.initializer.append(weight("w", 3))
    proto.graph.node.append(
        helper.make_node("Constant", [], ["k"], value=helper.make_tensor("k", 1, [2], [1.0, 2.0]))
    )
    return proto.SerializeToString()


REAL = _real()


class _Facts:
    """What onnx's own parse says, gathered the way owl's reader gathers it."""

    def __init__(self, proto: ModelProto) -> None:
        self.nodes: Counter[tuple[str, str]] = Counter()
        self.graphs = self.tensors = 0
        self.external: list[tuple[str, str]] = []
        if proto.HasField("graph"):
            self.graph(proto.graph)
        for training in proto.training_info:
            for part in ("initialization", "algorithm"):
                if training.HasField(part):
                    self.graph(getattr(training, part))
        for function in proto.functions:
            for node in function.node:
                self.node(node)
            for attribute in function.attribute_proto:
                self.attribute(attribute)

    def graph(self, graph: GraphProto) -> None:
        self.graphs += 1
        for node in graph.node:
            self.node(node)
        for tensor in graph.initializer:
            self.tensor(tensor)
        for sparse in graph.sparse_initializer:
            self.sparse(sparse)

    def node(self, node: NodeProto) -> None:
        self.nodes[(node.domain, node.op_type)] += 1
        for attribute in node.attribute:
            self.attribute(attribute)

    def attribute(self, attribute: AttributeProto) -> None:
        if attribute.HasField("t"):
            self.tensor(attribute.t)
        if attribute.HasField("g"):
            self.graph(attribute.g)
        if attribute.HasField("sparse_tensor"):
            self.sparse(attribute.sparse_tensor)
        for tensor in attribute.tensors:
            self.tensor(tensor)
        for graph in attribute.graphs:
            self.graph(graph)
        for sparse in attribute.sparse_tensors:
            self.sparse(sparse)

    def sparse(self, sparse: SparseTensorProto) -> None:
        for part in ("values", "indices"):
            if sparse.HasField(part):
                self.tensor(getattr(sparse, part))

    def tensor(self, tensor: TensorProto) -> None:
        self.tensors += 1
        if tensor.data_location == TensorProto.EXTERNAL:
            info = {entry.key: entry.value for entry in tensor.external_data}
            self.external.append((tensor.name, info["location"]))


def check(path: Path, data: bytes) -> list[Finding]:
    path.write_bytes(data)
    try:
        findings = scan_onnx(path, file=path.name)
    except Unverified as err:
        assert err.reason
        assert all(finding.check in CHECKS for finding in err.findings)
        event("unverified")
        return err.findings
    event("passed" if not findings else "findings")
    assert all(finding.check in CHECKS for finding in findings)
    proto = onnx.load(path, load_external_data=False)  # raises if owl was too permissive
    facts, expected = read_model(path), _Facts(proto)
    assert facts.ir_version == proto.ir_version
    assert facts.opsets == {entry.domain: entry.version for entry in proto.opset_import}
    assert facts.nodes == sum(expected.nodes.values())
    assert {(d, op) for d, ops in facts.operators.items() for op in ops} == set(expected.nodes)
    assert facts.functions == {(f.domain, f.name) for f in proto.functions}
    assert (facts.graphs, facts.tensors) == (expected.graphs, expected.tensors)
    assert [(e.tensor, e.location) for e in facts.external] == expected.external
    return findings


# Where random bytes go: the whole file, after a model's first bytes, or inside a message of
# a valid model (a node, an attribute, a tensor), so that the schema walk meets them deep.
WRAPS = {
    "bare": lambda data: data,
    "after-head": lambda data: REAL[:4] + data,
    "node": lambda data: _model(field(1, data)),
    "attribute": lambda data: _model(field(1, field(4, b"If") + field(5, data))),
    "tensor": lambda data: _model(field(5, field(8, b"w") + data)),
}


def _model(graph: bytes) -> bytes:
    return field(1, 8, 0) + field(7, graph) + field(8, field(1, b"") + field(2, 18, 0))


@FUZZ
@given(data=st.binary(max_size=512), wrap=st.sampled_from(sorted(WRAPS)))
def test_random_bytes(tmp_path: Path, data: bytes, wrap: str) -> None:
    check(tmp_path / "m.onnx", WRAPS[wrap](data))


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.integers(0, len(REAL)),
)
def test_mutated_real_model(tmp_path: Path, edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(REAL)
    for position, value in edits:
        data[position] = value
    check(tmp_path / "m.onnx", bytes(data[:cut]))


# Protobuf messages of random fields, nested: numbers and strings that ONNX's messages use,
# so that many of them parse, and owl's facts can be held against onnx's own parse.
NUMBERS = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 20, 22, 25, 99])
WORDS = st.sampled_from(["", "my.ops", "Relu", "location", "offset", "length", "../x", "7"])
SCALARS = st.one_of(
    st.builds(lambda n, v: field(n, v, 0), NUMBERS, st.sampled_from([0, 1, 2, 8, 1 << 63])),
    st.builds(lambda n, text: field(n, text.encode()), NUMBERS, WORDS),
    st.builds(lambda n, raw: field(n, raw), NUMBERS, st.binary(max_size=6)),
    st.builds(lambda n, raw: varint(n << 3 | 5) + raw, NUMBERS, st.binary(min_size=4, max_size=4)),
)
MESSAGES = st.recursive(
    st.lists(SCALARS, max_size=3).map(b"".join),
    lambda inner: st.lists(SCALARS | st.builds(field, NUMBERS, inner), max_size=4).map(b"".join),
    max_leaves=24,
)


@FUZZ
@given(graph=MESSAGES, rest=MESSAGES)
def test_generated_messages(tmp_path: Path, graph: bytes, rest: bytes) -> None:
    check(tmp_path / "m.onnx", field(1, 8, 0) + field(7, graph) + rest)


DOMAINS = ["", "com.microsoft", "ai.onnx.ml", "my.ops", "ai.onnx.contrib"]
LOCATIONS = {
    None: False,  # no external data
    "model.onnx.data": False,
    "./model.onnx.data": False,
    "../model.onnx.data": True,
    "/etc/passwd": True,
    "sub/../../x": True,
}


@FUZZ
@given(
    ops=st.lists(
        st.tuples(st.sampled_from(DOMAINS), st.sampled_from("AB")), min_size=1, max_size=3
    ),
    defined=st.lists(st.tuples(st.sampled_from(DOMAINS[2:]), st.sampled_from("AB")), max_size=2),
    levels=st.integers(0, 3),
    location=st.sampled_from(sorted(LOCATIONS, key=str)),
)
def test_generated_models(
    tmp_path: Path,
    ops: list[tuple[str, str]],
    defined: list[tuple[str, str]],
    levels: int,
    location: str | None,
) -> None:
    nodes = [helper.make_node(op, ["x"], ["y"], domain=domain) for domain, op in ops]
    proto = nested(nodes[0], levels=levels) if levels else custom_op(*ops[0])
    proto.graph.node.extend(nodes[1:])
    proto.graph.node.append(helper.make_node("Add", ["x", "w"], ["z"]))
    proto.graph.initializer.append(weight("w", 64))
    for domain, op in dict.fromkeys(defined):
        proto.functions.append(local_function(domain, op))
    path = tmp_path / "model.onnx"
    if location is None:
        save(proto, path)
    else:
        save(proto, path, external="model.onnx.data")
        stored = onnx.load(path, load_external_data=False)
        stored.graph.initializer[0].external_data[0].value = location
        path.write_bytes(stored.SerializeToString())
    found = {finding.check for finding in check(path, path.read_bytes())}
    custom = {(d, op) for d, op in ops if d not in builtin_domains()} - set(defined)
    assert ("onnx.custom-op" in found) == bool(custom)
    assert ("onnx.external-data-escape" in found) == LOCATIONS[location]
    assert found <= CHECKS
