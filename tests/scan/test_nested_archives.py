"""Zips inside zips (owl.scan.zip_nesting): scanned like the outer one to a depth limit,
out of one budget of decompressed bytes, with locations that name the way in."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from owl.scan import scan_file
from owl.scan import zip_nesting as zip_nesting_module
from owl.scan.archives import scan_zip
from owl.scan.findings import Severity, Unverified
from tests.scan.test_archives import EVIL
from tests.scan.test_pickles import Reduces

BENIGN = pickle.dumps({"w": [1.0, 2.0]}, protocol=2)


def zipped(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_a_payload_two_zips_down_names_the_way_in(tmp_path: Path) -> None:
    inner = zipped({"data.pkl": EVIL, "README.txt": b"hello"})
    path = write(tmp_path / "outer.zip", zipped({"inner.zip": inner, "a.txt": b"x"}))
    (finding,) = scan_zip(path, file="outer.zip")
    assert finding.file == "outer.zip" and finding.severity is Severity.CRITICAL
    assert finding.location.startswith("inner.zip → data.pkl, opcode offset ")
    twin = write(tmp_path / "twin.zip", zipped({"inner.zip": zipped({"data.pkl": BENIGN})}))
    report = scan_file(twin)
    assert (report.format, report.status, report.findings) == ("zip", "scanned", [])


def test_inner_zips_are_found_by_content_whatever_their_name(tmp_path: Path) -> None:
    deepest = zipped({"weights/blob": EVIL}, zipfile.ZIP_STORED)
    middle = zipped({"part.bin": deepest})
    path = write(tmp_path / "bundle.zip", zipped({"model.dat": middle}))
    (finding,) = scan_zip(path, file="bundle.zip")
    assert finding.location.startswith("model.dat → part.bin → weights/blob, opcode offset")


def test_zips_nested_past_the_limit_are_unverified(tmp_path: Path) -> None:
    data = zipped({"data.pkl": BENIGN})
    for level in range(zip_nesting_module.MAX_ZIP_DEPTH):
        data = zipped({f"level{level}.zip": data})
    assert scan_zip(write(tmp_path / "ok.zip", data), file="ok.zip") == []
    deeper = write(tmp_path / "deep.zip", zipped({"top.zip": data}))
    with pytest.raises(Unverified, match="nested more than 3 deep") as raised:
        scan_zip(deeper, file="deep.zip")
    assert raised.value.location == "top.zip → level2.zip → level1.zip → level0.zip"


def test_a_nested_zip_bomb_is_unverified_naming_the_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each inner zip stores 8 MiB of zeros, which its outer zip deflates to a few kB:
    # owl decompresses every inner zip to read it, ten of them, twice.
    zeros = zipped({"zeros.bin": bytes(8 * 2**20)}, zipfile.ZIP_STORED)
    layer = zipped({f"z{n}.zip": zeros for n in range(10)})
    path = write(tmp_path / "bomb.zip", zipped({"a.zip": layer, "b.zip": layer}))
    assert path.stat().st_size < 300_000
    monkeypatch.setattr(zip_nesting_module, "MAX_ARCHIVE_BYTES", 40 * 2**20)
    with pytest.raises(Unverified, match="past 41,943,040 decompressed bytes") as raised:
        scan_zip(path, file="bomb.zip")
    assert raised.value.location.startswith("a.zip → z")


def test_the_budget_is_shared_by_members_read_at_every_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pickles = {f"p{n}.pkl": pickle.dumps(list(range(20_000))) for n in range(4)}
    path = write(tmp_path / "many.zip", zipped({"inner.zip": zipped(pickles), **pickles}))
    assert scan_zip(path, file="many.zip") == []
    monkeypatch.setattr(zip_nesting_module, "MAX_ARCHIVE_BYTES", 5 * len(pickles["p0.pkl"]))
    with pytest.raises(Unverified, match="decompressed bytes"):
        scan_zip(path, file="many.zip")


def test_checkpoints_and_arrays_inside_a_zip(tmp_path: Path) -> None:
    import torch

    torch.save({"w": torch.ones(2)}, tmp_path / "model.pt")
    torch.save({"x": Reduces(__import__("os").system, "id")}, tmp_path / "evil.pt")
    np.savez(tmp_path / "a.npz", a=np.arange(3), o=np.array([None, 1], dtype=object))
    members = {"model.pt": (tmp_path / "model.pt").read_bytes()}
    assert scan_zip(write(tmp_path / "clean.zip", zipped(members)), file="clean.zip") == []
    members |= {"evil.pt": (tmp_path / "evil.pt").read_bytes()}
    members |= {"a.npz": (tmp_path / "a.npz").read_bytes()}
    findings = scan_zip(write(tmp_path / "mixed.zip", zipped(members)), file="mixed.zip")
    assert [(f.check, f.location.split(",")[0]) for f in findings] == [
        ("pickle.dangerous-global", "evil.pt → evil/data.pkl"),
        ("npy.object-array", "a.npz → o.npy"),
    ]


def test_a_damaged_inner_zip_is_unverified_where_it_is(tmp_path: Path) -> None:
    inner = bytearray(zipped({"data.pkl": BENIGN * 20}))
    inner[-10:] = b"\xff" * 10  # its end of central directory
    path = write(tmp_path / "outer.zip", zipped({"inner.zip": bytes(inner)}))
    with pytest.raises(Unverified) as raised:
        scan_zip(path, file="outer.zip")
    assert raised.value.location == "inner.zip"


def test_an_empty_inner_zip_is_clean(tmp_path: Path) -> None:
    path = write(tmp_path / "outer.zip", zipped({"empty.zip": zipped({})}))
    assert scan_zip(path, file="outer.zip") == []
