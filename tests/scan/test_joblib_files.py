"""joblib files: arrays are stepped over as joblib.load reads them, every pickle part is
checked, and what does not add up is unverified (owl.scan.joblib_arrays, joblib_files).

The files are written by joblib.dump itself: plain and compressed, aligned (joblib >= 1.2)
and unaligned (what joblib writes to a file it cannot seek, as joblib < 1.2 always did).
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zlib
from pathlib import Path

import joblib
import numpy as np
import pytest
from joblib.numpy_pickle_compat import NDArrayWrapper, write_zfile

from owl.scan import joblib_files as joblib_files_module
from owl.scan import scan_file
from owl.scan.detect import promises_model
from owl.scan.findings import Severity, Unverified
from owl.scan.joblib_files import looks_like_joblib, scan_joblib
from owl.scan.pickles import scan_pickle, scan_pickle_bytes
from tests.scan.test_pickles import Reduces

COMPRESSORS = ["zlib", "gzip", "bz2", "lzma", "xz"]
EVIL = Reduces(os.system, "echo owl")


def arrays() -> dict[str, object]:
    """What models keep in joblib files: arrays of every kind numpy pickles differently."""
    return {
        "floats": np.arange(40.0).reshape(5, 8),
        "fortran": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
        "empty": np.zeros((2, 0)),
        "scalar": np.array(3.5),
        "big-endian": np.arange(5, dtype=">i4"),
        "strings": np.array(["ab", "cde"]),
        "bytes": np.array([b"xy"]),
        "dates": np.array(["2024-01-01"], dtype="M8[ns]"),
        "bools": np.array([True, False]),
        # sklearn's tree nodes are a structured array; subarrays and titles too.
        "nodes": np.zeros(4, dtype=[("left", "<i8"), ("threshold", "<f8"), ("v", "<f4", (2,))]),
        "objects": np.array([1, "x", None, (2, 3)], dtype=object),
        "object-fields": np.zeros(2, dtype=[("n", "<i8"), ("o", "O")]),
        "numpy-scalar": np.float64(2.0),
    }


class Unseekable(io.RawIOBase):
    """A file joblib cannot tell() in, so it writes arrays without padding (joblib < 1.2)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, chunk: bytes) -> int:  # type: ignore[override]
        self.data += chunk
        return len(chunk)

    def tell(self) -> int:
        raise io.UnsupportedOperation


def unaligned(obj: object, path: Path) -> Path:
    out = Unseekable()
    joblib.dump(obj, out)
    path.write_bytes(bytes(out.data))
    return path


def dump(obj: object, path: Path, **options: object) -> Path:
    joblib.dump(obj, path, **options)
    return path


def checks(path: Path) -> list[str]:
    report = scan_file(path)
    assert report.status == "scanned", report.error
    return [f.check for f in report.findings]


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_joblib_arrays_of_every_kind_are_clean(tmp_path: Path, protocol: int) -> None:
    path = dump(arrays(), tmp_path / "model.joblib", protocol=protocol)
    report = scan_file(path)
    assert (report.format, report.status, report.findings) == ("pickle", "scanned", [])
    assert joblib.load(path)["floats"].shape == (5, 8)  # the file is what joblib reads


def test_memory_mappable_arrays_are_padded_and_clean(tmp_path: Path) -> None:
    path = dump({"w": np.ones(1000, np.float32), "b": np.arange(7)}, tmp_path / "m.joblib")
    assert np.array_equal(joblib.load(path, mmap_mode="r")["b"], np.arange(7))
    assert scan_pickle(path, file="m.joblib") == []


def test_unaligned_arrays_of_old_joblib_are_clean(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    data = {"weights": [rng.random(n) for n in range(1, 60)], **arrays()}
    path = unaligned(data, tmp_path / "old.pkl")
    assert scan_pickle(path, file="old.pkl") == []


def test_a_shell_call_beside_the_arrays_is_critical(tmp_path: Path) -> None:
    benign = dump({"w": np.arange(5.0), "n": 3}, tmp_path / "benign.joblib")
    evil = dump({"w": np.arange(5.0), "n": EVIL}, tmp_path / "evil.joblib")
    assert checks(benign) == []
    (finding,) = scan_file(evil).findings
    assert finding.severity is Severity.CRITICAL and "system" in finding.reason
    # Found after the array's bytes, at its own offset in the file.
    assert int(finding.location.rsplit(" ", 1)[1]) > evil.read_bytes().index(b"\x00" * 8)


def test_a_shell_call_inside_an_object_array_is_critical(tmp_path: Path) -> None:
    benign = dump(np.array([1, "x"], dtype=object), tmp_path / "benign.joblib")
    evil = dump(np.array([1, EVIL], dtype=object), tmp_path / "evil.joblib")
    assert checks(benign) == []
    assert checks(evil) == ["pickle.dangerous-global"]


def test_the_array_placeholder_is_allowed_only_where_joblib_reads_it() -> None:
    wrapper = b"\x80\x02cjoblib.numpy_pickle\nNumpyArrayWrapper\n)\x81."
    (finding,) = scan_pickle_bytes(wrapper, file="data.pkl")
    assert finding.severity is Severity.HIGH and "NumpyArrayWrapper" in finding.reason


def test_array_bytes_that_pickle_load_would_run_are_found(tmp_path: Path) -> None:
    # Unpadded array data that is a pickle of os.system: joblib.load reads it as uint8s,
    # pickle.load (torch.load, numpy.load...) runs it.
    payload = b"cos\nsystem\n(S'echo owl'\ntR."
    path = unaligned({"a": np.frombuffer(payload, np.uint8)}, tmp_path / "trap.pkl")
    assert bytes(joblib.load(path)["a"]) == payload
    assert "os.system" in imports_of(path.read_bytes())
    (finding,) = scan_pickle(path, file="trap.pkl")
    assert finding.severity is Severity.CRITICAL and "pickle.load runs them" in finding.reason
    twin = unaligned({"a": np.frombuffer(payload.upper(), np.uint8)}, tmp_path / "twin.pkl")
    assert scan_pickle(twin, file="twin.pkl") == []


def imports_of(data: bytes) -> list[str]:
    """What pickle.load imports from `data`, with every import made inert."""
    imported = []

    class Inert:
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def __setstate__(self, state: object) -> None:
            pass

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            imported.append(f"{module}.{name}")
            return Inert

    try:
        Recorder(io.BytesIO(data)).load()
    except Exception:  # the recorder stands in for real classes; it may fail past them
        pass
    return imported


@pytest.mark.parametrize("compressor", COMPRESSORS)
def test_compressed_joblib_files_are_decompressed_and_scanned(
    tmp_path: Path, compressor: str
) -> None:
    benign = dump(arrays(), tmp_path / f"benign.{compressor}", compress=(compressor, 3))
    evil = dump({"w": np.ones(3), "x": EVIL}, tmp_path / f"e.{compressor}", compress=compressor)
    report = scan_file(benign, name="model.joblib")
    assert (report.format, report.status, report.findings) == ("joblib", "scanned", [])
    (finding,) = scan_file(evil).findings
    assert finding.severity is Severity.CRITICAL
    assert finding.location.startswith(f"{compressor}-decompressed, opcode offset ")


def test_lz4_is_unverified_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl.lz4"
    path.write_bytes(b"\x04\x22\x4d\x18" + bytes(60))
    report = scan_file(path)
    assert (report.format, report.status) == ("joblib", "unverified")
    assert "lz4" in (report.error or "")


def test_joblib_before_0_10_zf_files(tmp_path: Path) -> None:
    def zfile(obj: object, name: str) -> Path:
        with (tmp_path / name).open("wb") as out:
            write_zfile(out, pickle.dumps(obj, protocol=2))
        return tmp_path / name

    assert checks(zfile({"w": [1, 2]}, "plain.pkl")) == []
    assert checks(zfile({"x": EVIL}, "evil.pkl")) == ["pickle.dangerous-global"]
    # Its arrays live in files beside it, which joblib.load reads with pickle allowed.
    (finding,) = scan_file(zfile(NDArrayWrapper("a.npy", np.ndarray), "arrays.pkl")).findings
    assert finding.severity is Severity.HIGH and "another file" in finding.reason
    path = zfile({"w": 1}, "lying.pkl")
    raw = bytearray(path.read_bytes())
    raw[2:6] = b"0x99"  # the length header no longer matches
    path.write_bytes(bytes(raw))
    assert "header says" in (scan_file(path).error or "")


def test_a_decompression_bomb_is_unverified_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = dump(np.zeros(8_000_000), tmp_path / "bomb.joblib", compress=("zlib", 9))
    assert path.stat().st_size < 100_000
    monkeypatch.setattr(joblib_files_module, "MAX_DECOMPRESSED", 4_000_000)
    with pytest.raises(Unverified, match="at most 4,000,000 bytes"):
        scan_joblib(path, file="bomb.joblib")


def test_bytes_after_a_zlib_stream_are_unverified(tmp_path: Path) -> None:
    # joblib.load feeds them to the finished decompressor for ever and never returns.
    path = dump({"w": np.ones(3)}, tmp_path / "t.joblib", compress="zlib")
    path.write_bytes(path.read_bytes() + b"more")
    assert looks_like_joblib(path, path.read_bytes()[:64])
    with pytest.raises(Unverified, match="never finishes"):
        scan_joblib(path, file="t.joblib")


def test_cut_or_damaged_compressed_streams_are_unverified(tmp_path: Path) -> None:
    for compressor in COMPRESSORS:
        path = dump(arrays(), tmp_path / f"c.{compressor}", compress=compressor)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) * 2 // 3])
        report = scan_file(path, name="model.joblib")
        assert report.status == "unverified", compressor
        # bz2 gives nothing before its first whole block: cut there, no pickle shows.
        assert report.format == ("unknown" if compressor == "bz2" else "joblib")


def test_an_array_cut_off_is_unverified(tmp_path: Path) -> None:
    path = dump({"w": np.arange(1000.0)}, tmp_path / "cut.joblib")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(Unverified, match="cut off: the array at offset"):
        scan_pickle(path, file="cut.joblib")


def test_a_dtype_whose_state_claims_objects_is_unverified(tmp_path: Path) -> None:
    # numpy trusts the pickled flags: an "f8" flagged as holding objects makes joblib
    # unpickle the bytes after it, so owl must not step over them as floats.
    path = dump({"w": np.arange(4.0)}, tmp_path / "flags.joblib", protocol=4)
    data = path.read_bytes()
    flags = b"K\x00t\x94b"  # ..., elsize -1, alignment -1, flags 0), BUILD of the dtype
    assert data.count(flags) == 1
    path.write_bytes(data.replace(flags, b"K\x01t\x94b"))
    with pytest.raises(Unverified, match="disagrees"):
        scan_pickle(path, file="flags.joblib")


def test_a_frame_that_goes_on_past_the_placeholder_is_unverified(tmp_path: Path) -> None:
    path = dump({"w": np.arange(4.0)}, tmp_path / "frame.joblib", protocol=4)
    data = bytearray(path.read_bytes())
    assert data[2] == 0x95  # FRAME, its length, then the wrapper up to its BUILD
    (length,) = struct.unpack_from("<Q", data, 3)
    struct.pack_into("<Q", data, 3, length + 8)
    path.write_bytes(bytes(data))
    with pytest.raises(Unverified, match="frame goes on past it"):
        scan_pickle(path, file="frame.joblib")


def test_a_pickle_that_stops_inside_its_frame_is_unverified() -> None:
    data = bytearray(pickle.dumps([1, 2], protocol=4))
    (length,) = struct.unpack_from("<Q", data, 3)
    struct.pack_into("<Q", data, 3, length + 4)  # four more bytes "in" the frame
    with pytest.raises(Unverified, match="before the end of its frame"):
        scan_pickle_bytes(bytes(data) + pickle.dumps(EVIL)[:4], file="f.pkl")


def test_gzip_that_holds_no_pickle_is_not_joblib(tmp_path: Path) -> None:
    import gzip

    text = tmp_path / "notes.txt.gz"
    text.write_bytes(gzip.compress(b"just some text\n" * 10))
    assert scan_file(text).status == "unsupported"
    assert not looks_like_joblib(tmp_path / "x", zlib.compress(b"x")[:1] + b"\x00" * 63)


def test_compressed_model_names_promise_a_model() -> None:
    assert promises_model("model.pkl.gz") and promises_model("forest.joblib.xz")
    assert promises_model("model_best.pth.tar")
    assert not promises_model("notes.txt.gz")
