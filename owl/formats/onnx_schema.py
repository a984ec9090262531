"""The message types of onnx.proto (onnx 1.23, IR version 14) as the wire reader needs them.

Every message-typed field is listed, so that the reader walks every nested message that
protobuf itself would parse (and refuse when broken); scalar fields only where their wire
type matters. A field missing here is one newer than this table: its bytes are skipped.
"""

from __future__ import annotations

from owl.formats.onnx_wire import I32, I64, LEN, VARINT

# Scalar kinds; a str instead names the message type the field holds.
INT, TEXT, BYTES, F32, PACKED_INT, PACKED_F32, PACKED_F64 = range(7)
WIRES = {
    INT: (VARINT,),
    TEXT: (LEN,),  # read into memory as UTF-8: names, domains, paths
    BYTES: (LEN,),  # skipped unread: doc strings, raw_data, strings owl does not need
    F32: (I32,),
    PACKED_INT: (VARINT, LEN),  # repeated numbers come one by one or packed in one LEN
    PACKED_F32: (I32, LEN),
    PACKED_F64: (I64, LEN),
}
PACKED_WIDTH = {PACKED_INT: 0, PACKED_F32: 4, PACKED_F64: 8}

ENTRY = "StringStringEntryProto"
EXTERNAL_ENTRY = "TensorProto.external_data"  # the same message, but its strings are read

SCHEMA: dict[str, dict[int, int | str]] = {
    "ModelProto": {
        1: INT, 2: TEXT, 3: TEXT, 4: BYTES, 5: INT, 6: BYTES, 7: "GraphProto",
        8: "OperatorSetIdProto", 14: ENTRY, 20: "TrainingInfoProto", 25: "FunctionProto",
        26: "DeviceConfigurationProto",
    },
    "OperatorSetIdProto": {1: TEXT, 2: INT},
    ENTRY: {1: BYTES, 2: BYTES},
    EXTERNAL_ENTRY: {1: TEXT, 2: TEXT},
    "GraphProto": {
        1: "NodeProto", 2: BYTES, 5: "TensorProto", 10: BYTES, 11: "ValueInfoProto",
        12: "ValueInfoProto", 13: "ValueInfoProto", 14: "TensorAnnotation",
        15: "SparseTensorProto", 16: ENTRY,
    },
    "NodeProto": {
        1: BYTES, 2: BYTES, 3: BYTES, 4: TEXT, 5: "AttributeProto", 6: BYTES, 7: TEXT,
        8: BYTES, 9: ENTRY, 10: "NodeDeviceConfigurationProto",
    },
    "AttributeProto": {
        1: BYTES, 2: F32, 3: INT, 4: BYTES, 5: "TensorProto", 6: "GraphProto", 7: PACKED_F32,
        8: PACKED_INT, 9: BYTES, 10: "TensorProto", 11: "GraphProto", 13: BYTES,
        14: "TypeProto", 15: "TypeProto", 20: INT, 21: BYTES, 22: "SparseTensorProto",
        23: "SparseTensorProto",
    },
    "TensorProto": {
        1: PACKED_INT, 2: INT, 3: "TensorProto.Segment", 4: PACKED_F32, 5: PACKED_INT,
        6: BYTES, 7: PACKED_INT, 8: TEXT, 9: BYTES, 10: PACKED_F64, 11: PACKED_INT,
        12: BYTES, 13: EXTERNAL_ENTRY, 14: INT, 16: ENTRY,
    },
    "TensorProto.Segment": {1: INT, 2: INT},
    "SparseTensorProto": {1: "TensorProto", 2: "TensorProto", 3: PACKED_INT},
    "ValueInfoProto": {1: BYTES, 2: "TypeProto", 3: BYTES, 4: ENTRY},
    "TypeProto": {
        1: "TypeProto.Tensor", 4: "TypeProto.Sequence", 5: "TypeProto.Map", 6: BYTES,
        7: "TypeProto.Opaque", 8: "TypeProto.SparseTensor", 9: "TypeProto.Optional",
    },
    "TypeProto.Tensor": {1: INT, 2: "TensorShapeProto"},
    "TypeProto.SparseTensor": {1: INT, 2: "TensorShapeProto"},
    "TypeProto.Sequence": {1: "TypeProto"},
    "TypeProto.Optional": {1: "TypeProto"},
    "TypeProto.Map": {1: INT, 2: "TypeProto"},
    "TypeProto.Opaque": {1: BYTES, 2: BYTES},
    "TensorShapeProto": {1: "TensorShapeProto.Dimension"},
    "TensorShapeProto.Dimension": {1: INT, 2: BYTES, 3: BYTES},
    "TrainingInfoProto": {1: "GraphProto", 2: "GraphProto", 3: ENTRY, 4: ENTRY},
    "FunctionProto": {
        1: TEXT, 4: BYTES, 5: BYTES, 6: BYTES, 7: "NodeProto", 8: BYTES,
        9: "OperatorSetIdProto", 10: TEXT, 11: "AttributeProto", 12: "ValueInfoProto",
        13: BYTES, 14: ENTRY,
    },
    "TensorAnnotation": {1: BYTES, 2: ENTRY},
    "DeviceConfigurationProto": {1: BYTES, 2: INT, 3: BYTES},
    "NodeDeviceConfigurationProto": {1: BYTES, 2: "ShardingSpecProto", 3: INT},
    "ShardingSpecProto": {
        1: BYTES, 2: PACKED_INT, 3: "IntIntListEntryProto", 4: "ShardedDimProto",
    },
    "IntIntListEntryProto": {1: INT, 2: PACKED_INT},
    "ShardedDimProto": {1: INT, 2: "SimpleShardedDimProto"},
    "SimpleShardedDimProto": {1: INT, 2: BYTES, 3: INT},
}  # fmt: skip

# Message fields that hold one message, not a list. protobuf merges two occurrences of one
# into a single message, whose meaning then differs from either part (a tensor's location
# from one, "stored externally" from the other); owl refuses the repeat instead.
SINGULAR = frozenset(
    {
        ("ModelProto", 7), ("AttributeProto", 5), ("AttributeProto", 6),
        ("AttributeProto", 14), ("AttributeProto", 22), ("TensorProto", 3),
        ("SparseTensorProto", 1), ("SparseTensorProto", 2), ("ValueInfoProto", 2),
        ("TypeProto", 1), ("TypeProto", 4), ("TypeProto", 5), ("TypeProto", 7),
        ("TypeProto", 8), ("TypeProto", 9), ("TypeProto.Tensor", 2),
        ("TypeProto.SparseTensor", 2), ("TypeProto.Sequence", 1), ("TypeProto.Optional", 1),
        ("TypeProto.Map", 2), ("TrainingInfoProto", 1), ("TrainingInfoProto", 2),
    }
)  # fmt: skip

# The graph fields a model's graph (ModelProto field 7) may begin with: all length-delimited.
GRAPH_FIELDS = frozenset(SCHEMA["GraphProto"])
