"""Fuzz the GGUF and safetensors readers: whatever the bytes, findings or Unverified come out.

Besides random bytes, real files are mutated and cut. A file owl passes must also be one
the format's own reader accepts: owl is never more permissive than the loader it guards.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file

from owl.scan.findings import Finding, Unverified
from owl.scan.gguf import scan_gguf
from owl.scan.safetensors import scan_safetensors
from tests.support.gguf_bytes import RawTensor, build_gguf, kv_str_array, kv_u32
from tests.support.tiny_gguf import write_tiny_gguf

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
Edits = list[tuple[int, int]]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Real files to mutate: a GGUFWriter file, a hand-built one, a safetensors file."""
    folder = tmp_path_factory.mktemp("corpus")
    tiny = write_tiny_gguf(folder / "tiny.gguf", rows=4).read_bytes()
    built = build_gguf(
        [kv_u32("general.alignment", 16), kv_str_array("tokenizer.ggml.tokens", ["a", "bc"])],
        [RawTensor("a", (4, 2)), RawTensor("b", (32,), ggml_type=2)],
        alignment=16,
    )
    save_file(
        {"w": np.ones((2, 3), np.float16), "b": np.zeros(3, np.int64)},
        str(folder / "real.safetensors"),
        metadata={"format": "np"},
    )
    return {"tiny": tiny, "built": built, "st": (folder / "real.safetensors").read_bytes()}


def outcome(scan: Callable[..., list[Finding]], path: Path, data: bytes) -> list[Finding] | None:
    """The findings for `data`, or None when it is unverified; anything else fails the test."""
    path.write_bytes(data)
    try:
        findings = scan(path, file=path.name)
    except Unverified as err:
        assert err.reason and isinstance(err.location, str)
        event("unverified")
        return None
    event("scanned")
    assert isinstance(findings, list) and all(isinstance(f, Finding) for f in findings)
    return findings


def mutate(data: bytes, edits: Edits, cut: int | None) -> bytes:
    mutable = bytearray(data)
    for position, value in edits:
        mutable[position % len(mutable)] = value
    return bytes(mutable[:cut] if cut is not None else mutable)


edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=4)
cuts = st.none() | st.integers(0, 4096)


def _gguf_reader_accepts(path: Path) -> None:
    reader = gguf.GGUFReader(path)
    for tensor in reader.tensors:
        assert tensor.data_offset + tensor.n_bytes <= path.stat().st_size


@FUZZ
@given(data=st.binary(max_size=512), magic=st.booleans())
def test_gguf_random_bytes(tmp_path: Path, data: bytes, magic: bool) -> None:
    outcome(scan_gguf, tmp_path / "f.gguf", (b"GGUF\x03\0\0\0" if magic else b"") + data)


@FUZZ
@given(which=st.sampled_from(["tiny", "built"]), edits=edits, cut=cuts)
def test_gguf_mutated_real_files(
    tmp_path: Path, corpus: dict[str, bytes], which: str, edits: Edits, cut: int | None
) -> None:
    path = tmp_path / "f.gguf"
    if outcome(scan_gguf, path, mutate(corpus[which], edits, cut)) is not None:
        _gguf_reader_accepts(path)


@FUZZ
@given(
    shapes=st.lists(st.lists(st.sampled_from([0, 1, 3, 32, 64]), max_size=5), max_size=4),
    types=st.lists(st.sampled_from([0, 2, 8, 4, 99]), min_size=4, max_size=4),
    alignment=st.sampled_from([32, 32, 16, 64, 48, 1]),
    nudge=st.sampled_from([None, None, 0, 1, 32]),
)
def test_gguf_generated_layouts(
    tmp_path: Path, shapes: list[list[int]], types: list[int], alignment: int, nudge: int | None
) -> None:
    tensors = [RawTensor(f"t{i}", tuple(shape), types[i]) for i, shape in enumerate(shapes)]
    if tensors and nudge is not None:
        tensors[-1].offset = nudge
    data = build_gguf([kv_u32("general.alignment", alignment)], tensors, alignment=alignment)
    path = tmp_path / "f.gguf"
    if outcome(scan_gguf, path, data) is not None:
        _gguf_reader_accepts(path)


@FUZZ
@given(data=st.binary(max_size=512))
def test_safetensors_random_bytes(tmp_path: Path, data: bytes) -> None:
    outcome(scan_safetensors, tmp_path / "f.safetensors", data)


@FUZZ
@given(edits=edits, cut=cuts)
def test_safetensors_mutated_real_file(
    tmp_path: Path, corpus: dict[str, bytes], edits: Edits, cut: int | None
) -> None:
    path = tmp_path / "f.safetensors"
    if outcome(scan_safetensors, path, mutate(corpus["st"], edits, cut)) is not None:
        with safe_open(path, "np") as handle:
            for name in handle.keys():
                handle.get_tensor(name)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 40) | st.sampled_from(["F32", "I8", "F4", "x"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=12,
)
entries = st.fixed_dictionaries(
    {"dtype": st.sampled_from(["F32", "U8", "F4", "BF16"]),
     "shape": st.lists(st.integers(0, 4), max_size=3),
     "data_offsets": st.lists(st.integers(0, 40), min_size=2, max_size=2)}
)  # fmt: skip


def _safetensors_outcome(path: Path, header: dict, data_size: int) -> None:
    raw = json.dumps(header).encode()
    data = struct.pack("<Q", len(raw)) + raw + b"\0" * data_size
    if outcome(scan_safetensors, path, data) is not None:
        with safe_open(path, "np") as handle:
            assert sorted(handle.keys()) == sorted(k for k in header if k != "__metadata__")


@FUZZ
@given(
    header=st.dictionaries(st.sampled_from(["a", "b", "__metadata__"]), entries | json_values),
    data_size=st.integers(0, 64),
)
def test_safetensors_generated_headers(tmp_path: Path, header: dict, data_size: int) -> None:
    _safetensors_outcome(tmp_path / "f.safetensors", header, data_size)


@FUZZ
@given(
    specs=st.lists(
        st.tuples(st.sampled_from(["F32", "U8", "F4", "F6_E2M3", "C64"]),
                  st.lists(st.integers(0, 5), max_size=3)),
        max_size=4,
    ),
    nudge=st.sampled_from([0, 0, 0, -1, 1, 8]),
    extra=st.sampled_from([0, 0, -1, 1]),
)  # fmt: skip
def test_safetensors_generated_layouts(
    tmp_path: Path, specs: list[tuple[str, list[int]]], nudge: int, extra: int
) -> None:
    bits = {"F32": 32, "U8": 8, "F4": 4, "F6_E2M3": 6, "C64": 64}
    header, offset = {}, 0
    for index, (dtype, shape) in enumerate(specs):
        size = bits[dtype] * int(np.prod(shape)) // 8
        header[f"t{index}"] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + size],
        }
        offset += size
    if specs and nudge:
        header[f"t{len(specs) - 1}"]["data_offsets"][1] += nudge
    _safetensors_outcome(tmp_path / "f.safetensors", header, max(offset + extra, 0))
