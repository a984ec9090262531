"""Walking a pickle's opcodes (owl.scan.pickle_ops): damage, and arguments stepped over.

A damaged pickle is unverified at the offset where decoding stopped, with what was found
before it; arguments too long to keep (tensor bytes stored inline) are never read.
"""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from owl.scan.findings import Unverified
from owl.scan.pickles import MAX_KEPT_ARGUMENT, scan_pickle_stream
from tests.scan.test_pickles import PROTO4, STACK_GLOBAL, Reduces, call, findings_of, su


def test_damaged_pickle_is_unverified_with_its_offset() -> None:
    data = pickle.dumps({"weights": list(range(50))}, protocol=2)
    with pytest.raises(Unverified) as raised:
        findings_of(data[:-10])
    assert raised.value.location.startswith("opcode offset ")
    with pytest.raises(Unverified):
        findings_of(data[:5] + b"\xff" + data[6:])  # an opcode that does not exist
    with pytest.raises(Unverified):
        findings_of(b"")


def test_damaged_pickle_that_already_imported_os_keeps_that_finding() -> None:
    data = pickle.dumps([Reduces(os.system, "id"), list(range(100))], protocol=2)
    with pytest.raises(Unverified) as raised:
        findings_of(data[:-30])
    assert [f.check for f in raised.value.findings] == ["pickle.dangerous-global"]
    assert raised.value.location.startswith("opcode offset ")


def test_joblib_array_bytes_inside_the_stream_are_unverified_with_a_reason() -> None:
    # joblib.dump pickles a NumpyArrayWrapper, then writes the array's raw bytes right
    # after its BUILD opcode (a padding-length byte, padding, the data) and goes on.
    wrapper = b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81}b"
    data = wrapper + b"\x01\xff" + np.arange(4.0).tobytes() + b"."
    with pytest.raises(Unverified, match="joblib"):
        findings_of(data)


def test_long_arguments_are_stepped_over_not_read() -> None:
    big = pickle.dumps({"tensor": np.zeros(1_000_000, dtype=np.float32)}, protocol=4)

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, n: int | None = -1) -> bytes:
            data = super().read(n)
            Counting.read_bytes += len(data)
            return data

    assert scan_pickle_stream(Counting(big), size=len(big), file="x") == []
    assert Counting.read_bytes < MAX_KEPT_ARGUMENT + 4096 < len(big)


def test_stepped_over_operand_of_stack_global_is_computed() -> None:
    huge_name = (
        b"\x8d" + (MAX_KEPT_ARGUMENT + 1).to_bytes(8, "little") + b"o" * (MAX_KEPT_ARGUMENT + 1)
    )
    data = PROTO4 + call(huge_name + su("system") + STACK_GLOBAL)
    assert {f.check for f in findings_of(data)} == {"pickle.computed-import"}
