"""Importance matrices: llama-imatrix's files (GGUF, or its older .dat format), read by owl,
and written by owl in llama-imatrix's GGUF format when it computes one (calibrate.py).

An importance matrix holds, for each weight tensor, the mean square of each input column
over some calibration text; llama.cpp's quantizer weighs its rounding errors by it. The
values are normalised as llama-quantize does before it hands them to the library. The files
are untrusted input: the GGUF layout is checked by owl's bounded reader before numpy maps
it, the .dat format is parsed with bounds checks, and nothing in either is executed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from owl.errors import QuantizationError
from owl.formats.gguf import read_gguf_header
from owl.formats.gguf_layout import GGUFError
from owl.store.blobs import sha256_file


@dataclass(frozen=True)
class Imatrix:
    """llama.cpp's importance matrix: for each weight tensor, the mean square of each input
    column over calibration text (one row of columns per expert of a MoE tensor)."""

    filename: str
    digest: str
    values: dict[str, np.ndarray]
    datasets: tuple[str, ...] = ()
    chunks: int | None = None
    # When owl computed it: the calibration text's name and digest, tokens, chunks and ctx.
    calibration: dict[str, Any] | None = None

    def record(self) -> dict[str, Any]:
        """What a manifest keeps of it."""
        record = {
            "file": self.filename,
            "digest": self.digest,
            "entries": len(self.values),
            "datasets": list(self.datasets),
            "chunks": self.chunks,
        }
        if self.calibration is not None:
            record["calibration"] = dict(self.calibration)
        return record


def write_imatrix(
    path: Path,
    sums: dict[str, np.ndarray],
    counts: dict[str, np.ndarray],
    *,
    datasets: tuple[str, ...],
    chunks: int,
    chunk_size: int,
) -> None:
    """Write llama-imatrix's GGUF: per weight `<name>.in_sum2` (matrices × columns, the sums
    of squares) and `<name>.counts` (matrices × 1), in name order, with its metadata keys.

    The file is written beside `path` and renamed into place, so a failure leaves no half
    file. QuantizationError when it cannot be written.
    """
    import gguf

    tmp = path.with_name(f".{path.name}.partial")
    try:
        writer = gguf.GGUFWriter(tmp, arch="imatrix")
        # llama-imatrix writes no architecture: the file belongs to no model family.
        writer.kv_data[0].pop(gguf.Keys.General.ARCHITECTURE, None)
        writer.add_type("imatrix")
        writer.add_array("imatrix.datasets", list(datasets))
        writer.add_uint32("imatrix.chunk_count", chunks)
        writer.add_uint32("imatrix.chunk_size", chunk_size)
        for name in sorted(sums):
            total = np.ascontiguousarray(sums[name], dtype=np.float32)
            count = np.ascontiguousarray(counts[name], dtype=np.float32).reshape(-1, 1)
            writer.add_tensor(f"{name}.in_sum2", total.reshape(count.shape[0], -1))
            writer.add_tensor(f"{name}.counts", count)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        tmp.replace(path)
    except OSError as err:
        raise QuantizationError(
            f"cannot write the importance matrix to {path}: {err.strerror or err}"
        ) from err
    finally:
        tmp.unlink(missing_ok=True)


def load_imatrix(path: Path) -> Imatrix:
    """Read an importance matrix file made by llama-imatrix (GGUF, or the older .dat format).

    The values are normalised as llama-quantize does (sums of squares over counts).
    QuantizationError when the file is not one, or holds values that are not finite.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
        digest = sha256_file(path)
        data = None if head == b"GGUF" else path.read_bytes()
    except OSError as err:
        raise QuantizationError(
            f"cannot read the importance matrix {path}: {err.strerror or err}"
        ) from err
    if data is None:
        values, datasets, chunks = _gguf_imatrix(path)
    else:
        values, datasets, chunks = _legacy_imatrix(data, path.name)
    for name, array in values.items():
        if not np.all(np.isfinite(array)):
            raise QuantizationError(
                f"the importance matrix {path.name} has values that are not finite for {name}; "
                "compute it again"
            )
    return Imatrix(path.name, digest, values, datasets, chunks)


def _not_imatrix(filename: str, why: str) -> QuantizationError:
    return QuantizationError(
        f"{filename} is not an importance matrix owl can use ({why}); "
        "pass a file made by llama.cpp's llama-imatrix"
    )


def _gguf_imatrix(path: Path) -> tuple[dict[str, np.ndarray], tuple[str, ...], int | None]:
    try:
        header = read_gguf_header(path)  # owl's bounded reader checks the layout first
    except (GGUFError, OSError) as err:
        raise _not_imatrix(path.name, f"not a valid GGUF file: {err}") from err
    if not any(tensor.name.endswith(".in_sum2") for tensor in header.tensors):
        raise _not_imatrix(path.name, "it has no *.in_sum2 tensors")
    import gguf

    try:
        reader = gguf.GGUFReader(path, "r")
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, np.ndarray] = {}
        for tensor in reader.tensors:
            for suffix, into in ((".in_sum2", sums), (".counts", counts)):
                if tensor.name.endswith(suffix):
                    if tensor.tensor_type != gguf.GGMLQuantizationType.F32:
                        raise _not_imatrix(path.name, f"{tensor.name} is not F32")
                    into[tensor.name.removesuffix(suffix)] = np.array(
                        tensor.data, dtype=np.float32
                    ).reshape(-1)
        field = reader.get_field("imatrix.datasets")
        datasets = tuple(str(item) for item in field.contents()) if field is not None else ()
        field = reader.get_field("imatrix.chunk_count")
        chunks = int(field.contents()) if field is not None else None
    except QuantizationError:
        raise
    except Exception as err:  # gguf's reader on bytes it does not expect: many error types
        raise _not_imatrix(path.name, f"{type(err).__name__}: {err}") from err
    values = {}
    for name, total in sums.items():
        count = counts.get(name)
        if count is None or count.size == 0 or total.size % count.size:
            raise _not_imatrix(path.name, f"{name} has no matching counts")
        rows = total.reshape(count.size, -1)
        # A row (an expert) that saw no calibration tokens weighs every column alike.
        seen = count[:, None] > 0
        values[name] = np.where(seen, rows / np.where(seen, count[:, None], 1), 1.0).reshape(-1)
    return {name: array.astype(np.float32) for name, array in values.items()}, datasets, chunks


def _legacy_imatrix(
    data: bytes, filename: str
) -> tuple[dict[str, np.ndarray], tuple[str, ...], int | None]:
    """llama-imatrix's format before GGUF: entries of (name, calls, values), then a trailer."""
    offset = 0

    def take(fmt: str) -> tuple[Any, ...]:
        nonlocal offset
        size = struct.calcsize(fmt)
        if offset + size > len(data):
            raise _not_imatrix(filename, "the file ends early")
        taken = struct.unpack_from(fmt, data, offset)
        offset += size
        return taken

    (n_entries,) = take("<i")
    if n_entries < 1:
        raise _not_imatrix(filename, f"it claims {n_entries} entries")
    values: dict[str, np.ndarray] = {}
    for _ in range(n_entries):
        (length,) = take("<i")
        if not 0 < length <= 1024:
            raise _not_imatrix(filename, f"a tensor name of {length} bytes")
        (raw,) = take(f"{length}s")
        calls, n_values = take("<ii")
        if n_values < 1 or offset + 4 * n_values > len(data):
            raise _not_imatrix(filename, f"{n_values} values where the file has fewer")
        array = np.frombuffer(data, dtype="<f4", count=n_values, offset=offset).astype(np.float32)
        offset += 4 * n_values
        values[raw.decode("utf-8", "replace")] = array / calls if calls > 0 else array
    datasets: tuple[str, ...] = ()
    chunks = None
    if len(data) - offset >= 8:  # newer .dat files end with the chunk count and the dataset
        chunks, length = take("<ii")
        if 0 < length <= len(data) - offset:
            datasets = (data[offset : offset + length].decode("utf-8", "replace"),)
    return values, datasets, chunks


def check_fits(matrix: Imatrix, model_path: Path, model: str) -> None:
    """Refuse a matrix made for another model: none of its names and sizes fit this one."""
    tensors = {tensor.name: tensor.shape for tensor in read_gguf_header(model_path).tensors}
    fitting = [
        name
        for name, array in matrix.values.items()
        if name in tensors
        and len(tensors[name]) >= 2
        and array.size == tensors[name][0] * (tensors[name][2] if len(tensors[name]) > 2 else 1)
    ]
    if not fitting:
        example = next(iter(matrix.values))
        raise QuantizationError(
            f"the importance matrix {matrix.filename} fits no tensor of '{model}' (it has "
            f"{len(matrix.values)} entries, e.g. {example!r}); it was made for another model: "
            f"compute one for this model"
        )
