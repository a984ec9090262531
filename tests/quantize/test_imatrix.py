"""owl.quantize.imatrix: importance matrices read from llama-imatrix's two file formats
(GGUF and the older .dat) as llama-quantize reads them; files that are not one are refused."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from owl.errors import QuantizationError
from owl.quantize import load_imatrix

SUMS = {"blk.0.ffn_down.weight": [[2.0, 4.0, 6.0]], "blk.0.attn_q.weight": [[1.0, 1.0, 3.0]]}


COUNTS = {"blk.0.ffn_down.weight": [2.0], "blk.0.attn_q.weight": [0.5]}


def write_gguf_imatrix(
    path: Path, sums: dict[str, list[list[float]]], counts: dict[str, list[float]]
) -> Path:
    """An imatrix as llama-imatrix writes it: <tensor>.in_sum2 [experts, columns], .counts."""
    writer = gguf.GGUFWriter(path, arch="imatrix")
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", ["calibration.txt"])
    writer.add_uint32("imatrix.chunk_count", 7)
    writer.add_uint32("imatrix.chunk_size", 512)
    for name in sums:
        writer.add_tensor(f"{name}.in_sum2", np.array(sums[name], dtype=np.float32))
        writer.add_tensor(f"{name}.counts", np.array(counts[name], dtype=np.float32)[:, None])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_legacy_imatrix(path: Path, values: dict[str, np.ndarray], calls: int) -> Path:
    """The older .dat format: entries of (name, calls, values × calls), chunks, dataset."""
    out = struct.pack("<i", len(values))
    for name, array in values.items():
        raw = name.encode()
        out += struct.pack("<i", len(raw)) + raw + struct.pack("<ii", calls, array.size)
        out += (array * calls).astype("<f4").tobytes()
    dataset = b"calibration.txt"
    path.write_bytes(out + struct.pack("<ii", 7, len(dataset)) + dataset)
    return path


def test_both_imatrix_formats_read_as_llama_quantize_reads_them(tmp_path: Path) -> None:
    from_gguf = load_imatrix(write_gguf_imatrix(tmp_path / "m.gguf", SUMS, COUNTS))
    expected = {"blk.0.ffn_down.weight": [1.0, 2.0, 3.0], "blk.0.attn_q.weight": [2.0, 2.0, 6.0]}
    assert {name: list(values) for name, values in from_gguf.values.items()} == expected
    assert from_gguf.datasets == ("calibration.txt",) and from_gguf.chunks == 7
    legacy = {name: np.array(values, dtype=np.float32) for name, values in expected.items()}
    from_dat = load_imatrix(write_legacy_imatrix(tmp_path / "m.dat", legacy, calls=10))
    assert {name: list(values) for name, values in from_dat.values.items()} == expected
    assert from_dat.datasets == ("calibration.txt",) and from_dat.chunks == 7
    assert from_dat.digest != from_gguf.digest


def test_an_expert_without_tokens_weighs_all_columns_alike(tmp_path: Path) -> None:
    sums = {"blk.0.ffn_down_exps.weight": [[2.0, 4.0], [9.0, 9.0]]}
    matrix = load_imatrix(
        write_gguf_imatrix(tmp_path / "m.gguf", sums, {"blk.0.ffn_down_exps.weight": [2.0, 0.0]})
    )
    assert list(matrix.values["blk.0.ffn_down_exps.weight"]) == [1.0, 2.0, 1.0, 1.0]


def test_files_that_are_not_an_imatrix_are_refused(tmp_path: Path, bundled_gguf: Path) -> None:
    with pytest.raises(QuantizationError, match="no \\*.in_sum2 tensors"):
        load_imatrix(bundled_gguf)  # a GGUF, but a model
    text = tmp_path / "notes.txt"
    text.write_text("calibration text, not an importance matrix\n")
    with pytest.raises(QuantizationError, match="not an importance matrix"):
        load_imatrix(text)
    nan = write_gguf_imatrix(
        tmp_path / "nan.gguf", {"a.weight": [[float("nan")]]}, {"a.weight": [1]}
    )
    with pytest.raises(QuantizationError, match="not finite"):
        load_imatrix(nan)
