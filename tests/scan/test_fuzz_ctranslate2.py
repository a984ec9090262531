"""Fuzz the CTranslate2 reader: whatever the bytes, a clean layout or Unverified comes out, and
a layout owl passes accounts for every byte of the file (no tensor past the end, none overlapping).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from owl.formats.ctranslate2 import read_layout
from owl.scan.ctranslate2 import scan_ctranslate2
from owl.scan.findings import Unverified
from tests.support.ct2_bytes import model_bin, variable

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
REAL = model_bin(
    [variable("encoder/conv1/weight", (4, 2)), variable("decoder/alibi", (), 1)],
    aliases=[("decoder/embeddings", "encoder/conv1/weight")],
)


def check(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        assert scan_ctranslate2(path, file=path.name) == []
    except Unverified as err:
        assert err.reason
        event("unverified")
        return
    event("clean")
    layout = read_layout(path)
    end = None
    for tensor in layout.variables:
        assert end is None or tensor.offset >= end  # in order, never overlapping
        end = tensor.offset + tensor.size
        assert end <= len(data)
    assert set(layout.aliases.values()) <= {tensor.name for tensor in layout.variables}


@FUZZ
@given(data=st.binary(max_size=512), header=st.booleans())
def test_random_bytes(tmp_path: Path, data: bytes, header: bool) -> None:
    check(tmp_path / "model.bin", (REAL[:20] if header else b"") + data)


@FUZZ
@given(
    edits=st.lists(st.tuples(st.integers(0, len(REAL) - 1), st.integers(0, 255)), max_size=4),
    cut=st.none() | st.integers(0, len(REAL)),
)
def test_mutated_real_layout(tmp_path: Path, edits: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(REAL)
    for position, value in edits:
        data[position] = value
    check(tmp_path / "model.bin", bytes(data[:cut]))


@FUZZ
@given(
    shapes=st.lists(st.lists(st.sampled_from([0, 1, 3, 7]), max_size=3), max_size=4),
    dtypes=st.lists(st.integers(0, 6), min_size=4, max_size=4),
    nudge=st.sampled_from([None, None, 0, 1, (1 << 32) - 1]),
    aliases=st.lists(st.tuples(st.sampled_from("abt0"), st.sampled_from("abt0")), max_size=2),
)
def test_generated_layouts(
    tmp_path: Path,
    shapes: list[list[int]],
    dtypes: list[int],
    nudge: int | None,
    aliases: list[tuple[str, str]],
) -> None:
    tensors = []
    for index, shape in enumerate(shapes):
        dtype = min(dtypes[index], 5)
        size = None if nudge is None or index else nudge
        tensors.append(variable(f"t{index}", tuple(shape), dtype, size=size))
    check(tmp_path / "model.bin", model_bin(tensors, aliases))
