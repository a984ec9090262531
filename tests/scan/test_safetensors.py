"""owl.scan.safetensors: files the real writers make pass; every broken rule is unverified."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import save_file
from safetensors.torch import save_file as save_torch

from owl.scan.findings import Unverified
from owl.scan.safetensors import scan_safetensors


def raw_file(
    tmp_path: Path, header: str | bytes, data: bytes = b"", length: int | None = None
) -> Path:
    """A safetensors file from a header as given (text or bytes) and data bytes."""
    raw = header.encode() if isinstance(header, str) else header
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def entry(dtype: str = "F32", shape: list = [2], offsets: list = [0, 8]) -> dict:  # noqa: B006
    return {"dtype": dtype, "shape": shape, "data_offsets": offsets}


def from_json(tmp_path: Path, header: dict, data_size: int) -> Path:
    return raw_file(tmp_path, json.dumps(header), b"\0" * data_size)


def unverified(path: Path) -> Unverified:
    with pytest.raises(Unverified) as caught:
        scan_safetensors(path, file=path.name)
    return caught.value


def test_numpy_written_file_with_many_dtypes_and_metadata_is_clean(tmp_path: Path) -> None:
    tensors = {
        f"t.{dtype}": np.arange(6).reshape(2, 3).astype(dtype)
        for dtype in ["float16", "float32", "float64", "int8", "uint8", "int16", "uint16",
                      "int32", "uint32", "int64", "uint64", "bool", "complex64"]
    }  # fmt: skip
    tensors["empty"] = np.zeros((0, 4), dtype=np.float32)
    tensors["scalar"] = np.array(1.5, dtype=np.float32)
    path = tmp_path / "model.safetensors"
    save_file(tensors, str(path), metadata={"format": "np", "note": "x" * 1000})
    assert scan_safetensors(path, file="model.safetensors") == []


def test_torch_written_file_with_bf16_and_fp8_is_clean(tmp_path: Path) -> None:
    tensors = {
        "bf16": torch.ones(3, 5, dtype=torch.bfloat16),
        "fp8": torch.zeros(7, dtype=torch.float8_e4m3fn),
        "fp8b": torch.zeros(2, 2, dtype=torch.float8_e5m2),
    }
    path = tmp_path / "model.safetensors"
    save_torch(tensors, str(path))
    assert scan_safetensors(path, file="x") == []


def test_empty_file_of_no_tensors_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_file({}, str(path))
    assert scan_safetensors(path, file="x") == []
    assert scan_safetensors(raw_file(tmp_path, '{"__metadata__": null}'), file="x") == []


def test_sub_byte_dtypes_count_bits(tmp_path: Path) -> None:
    for dtype, elements, n_bytes in [("F4", 4, 2), ("F6_E3M2", 4, 3), ("F6_E2M3", 0, 0)]:
        path = from_json(tmp_path, {"a": entry(dtype, [elements], [0, n_bytes])}, n_bytes)
        assert scan_safetensors(path, file="x") == []
        with safe_open(path, "np") as handle:  # the reader agrees
            assert handle.keys() == ["a"]
    err = unverified(from_json(tmp_path, {"a": entry("F4", [3], [0, 2])}, 2))
    assert "whole number of bytes" in err.reason


def test_every_truncation_of_a_real_file_is_unverified(tmp_path: Path) -> None:
    source = tmp_path / "real.safetensors"
    save_file({"a": np.ones((4, 4), np.float32), "b": np.ones(3, np.int8)}, str(source))
    whole = source.read_bytes()
    path = tmp_path / "cut.safetensors"
    for cut in range(len(whole)):
        path.write_bytes(whole[:cut])
        unverified(path)
    path.write_bytes(whole + b"\0")
    assert "belong to no tensor" in unverified(path).reason


TENSOR = entry()
CASES = [
    (raw_file, (b"{}", b"", 4096), "header", "the file has only"),
    (raw_file, (b"{}", b"", 100_000_001), "header", "at most 100,000,000"),
    (raw_file, (b'{"a\xff": 1}',), "header", "UTF-8"),
    (raw_file, ("{'a': 1}",), "header", "not valid JSON"),
    (raw_file, ("[]",), "header", "not a JSON object"),
    (raw_file, ("{}\0\0",), "header", "not valid JSON"),
    (raw_file, ('{"a": NaN}',), "header", "not valid JSON"),
    (raw_file, ("[" * 100_000 + "]" * 100_000,), "header", "not valid JSON"),
    (raw_file, ('{"a": ' + "9" * 5000 + "}",), "header", "not valid JSON"),
    (raw_file, ('{"a\\ud800": {}}',), "header", "not valid Unicode"),
    (raw_file, (json.dumps({"a": TENSOR})[:-1] + ', "a": ' + json.dumps(TENSOR) + "}", b"\0" * 8),
     "header", "'a' appears twice"),
    (raw_file, ('{"a": {"dtype": "F32", "dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}',
                b"\0" * 8), "header", "'dtype' appears twice"),
    (from_json, ({"a": entry("F31")}, 8), "tensor 'a'", "not a safetensors dtype"),
    (from_json, ({"a": entry("F32", [3])}, 8), "tensor 'a'", "takes 12 bytes"),
    (from_json, ({"a": entry(shape=[2.0])}, 8), "tensor 'a'", "not a list of sizes"),
    (from_json, ({"a": entry(shape=[True, 2])}, 8), "tensor 'a'", "not a list of sizes"),
    (from_json, ({"a": entry(shape=[-2, -1])}, 8), "tensor 'a'", "not a list of sizes"),
    (from_json, ({"a": entry(shape=[1 << 40, 1 << 40, 0], offsets=[0, 0])}, 0), "tensor 'a'",
     "more elements"),
    (from_json, ({"a": entry(offsets=[0, 8, 16])}, 8), "tensor 'a'", "[start, end] pair"),
    (from_json, ({"a": entry(offsets=[8, 0])}, 8), "tensor 'a'", "ends before it starts"),
    (raw_file, ('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 1%s]}}' % ("0" * 30),
                b"\0" * 8), "tensor 'a'", "pair"),
    (from_json, ({"a": {**TENSOR, "extra": 1}}, 8), "tensor 'a'", "exactly"),
    (from_json, ({"a": {"dtype": "F32", "shape": [2]}}, 8), "tensor 'a'", "exactly"),
    (from_json, ({"a": [1, 2]}, 8), "tensor 'a'", "exactly"),
    (from_json, ({"__metadata__": {"a": 1}}, 0), "metadata key '__metadata__'", "text to text"),
    (from_json, ({"__metadata__": [1]}, 0), "metadata key '__metadata__'", "text to text"),
    (from_json, ({"a": TENSOR, "b": entry(offsets=[4, 12])}, 12), "tensor 'b'", "overlap"),
    (from_json, ({"a": TENSOR, "b": entry(offsets=[12, 20])}, 20), "tensor 'b'", "4 bytes after"),
    (from_json, ({"a": entry(offsets=[8, 16])}, 16), "tensor 'a'", "starts at 8, not at 0"),
    (from_json, ({"a": TENSOR}, 12), "header", "4 bytes after the last tensor"),
    (from_json, ({"a": TENSOR, "b": entry(offsets=[8, 16])}, 12), "tensor 'b'", "holds 12"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "args", "location", "words"), CASES)
def test_malformed_safetensors_is_unverified(
    tmp_path: Path, make, args: tuple, location: str, words: str
) -> None:
    err = unverified(make(tmp_path, *args))
    assert err.location == location
    assert words in err.reason


def test_the_safetensors_reader_refuses_the_same_files_but_where_owl_is_stricter(
    tmp_path: Path,
) -> None:
    accepted_by_reader = set()
    for make, args, _, words in CASES:
        try:
            with safe_open(make(tmp_path, *args), "np") as handle:
                handle.keys()
        except Exception:  # the reader's errors are SafetensorError and others
            continue
        accepted_by_reader.add(words)
    # Where JSON parsers disagree (a tensor named twice: one reader keeps the first, this one
    # the last) and where an entry carries more than the format defines.
    assert accepted_by_reader == {"'a' appears twice", "exactly"}


def test_tiny_files_are_unverified(tmp_path: Path) -> None:
    path = tmp_path / "tiny.safetensors"
    for data in [b"", b"\x02\0\0", b"\x02\0\0\0\0\0\0\0{"]:
        path.write_bytes(data)
        assert unverified(path).location == "header"
