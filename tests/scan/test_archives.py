"""Zip archives and .npy arrays: the pickles inside are found, raw data is left alone."""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from owl.scan import archives
from owl.scan.archives import scan_npy, scan_zip
from owl.scan.findings import Severity, Unverified
from tests.scan.test_pickles import MEMO_TRICK, STACK_GLOBAL, Reduces

EVIL = pickle.dumps({"w": 1, "x": Reduces(os.system, "echo owl")}, protocol=2)


@pytest.fixture(scope="module")
def torch_zips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """torch.save's zip format: a state dict, a malicious object, a TorchScript program."""
    import torch
    from torch import nn

    folder = tmp_path_factory.mktemp("torch")
    model = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
    state = model.state_dict()
    state["half"] = torch.ones(3, dtype=torch.float16)
    state["param"] = nn.Parameter(torch.zeros(2, dtype=torch.bfloat16))
    paths = {name: folder / f"{name}.pt" for name in ("state", "evil", "script")}
    torch.save(state, paths["state"])
    torch.save({"state": state, "hook": Reduces(os.system, "echo owl")}, paths["evil"])
    with warnings.catch_warnings():  # TorchScript is deprecated, and still loaded
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(nn.Linear(2, 2)), paths["script"])
    return paths


def rewrite(source: Path, target: Path, replace: dict[str, bytes], **extra: bytes) -> Path:
    """Copy a zip member by member, replacing some members and adding others."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for info in old.infolist():
            new.writestr(info, replace.get(info.filename, old.read(info)))
        for name, data in extra.items():
            new.writestr(name, data)
    return target


def root_of(path: Path) -> str:
    with zipfile.ZipFile(path) as archive:
        return next(n for n in archive.namelist() if n.endswith("/data.pkl")).split("/")[0]


def test_torch_state_dict_zip_is_clean(torch_zips: dict[str, Path]) -> None:
    assert scan_zip(torch_zips["state"], file="pytorch_model.bin") == []


def test_torch_zip_with_a_payload_names_the_member(torch_zips: dict[str, Path]) -> None:
    (finding,) = scan_zip(torch_zips["evil"], file="evil.pt")
    assert finding.severity is Severity.CRITICAL and finding.check == "pickle.dangerous-global"
    assert finding.location.startswith(f"{root_of(torch_zips['evil'])}/data.pkl, opcode offset ")


def test_malicious_data_pkl_swapped_into_a_torch_zip(
    torch_zips: dict[str, Path], tmp_path: Path
) -> None:
    root = root_of(torch_zips["state"])
    path = rewrite(torch_zips["state"], tmp_path / "m.pt", {f"{root}/data.pkl": MEMO_TRICK})
    (finding,) = scan_zip(path, file="m.pt")
    offset = MEMO_TRICK.index(STACK_GLOBAL)
    assert finding.location == f"{root}/data.pkl, opcode offset {offset}"
    assert "os.system" in finding.reason


def test_pickle_in_a_member_not_named_pkl_is_found_by_content(tmp_path: Path) -> None:
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("README.txt", "just text\n")
        archive.writestr("weights/blob.bin", EVIL)
    (finding,) = scan_zip(path, file="bundle.zip")
    assert finding.location.startswith("weights/blob.bin, opcode offset")


def test_raw_torch_storages_are_not_unpickled(torch_zips: dict[str, Path], tmp_path: Path) -> None:
    # torch.load reads <root>/data/<key> as raw bytes, so a pickle there never runs.
    root = root_of(torch_zips["state"])
    path = rewrite(torch_zips["state"], tmp_path / "s.pt", {f"{root}/data/0": EVIL})
    assert scan_zip(path, file="s.pt") == []
    path = rewrite(torch_zips["state"], tmp_path / "t.pt", {}, **{f"{root}/extra.pkl": EVIL})
    assert [f.severity for f in scan_zip(path, file="t.pt")] == [Severity.CRITICAL]


def test_torchscript_is_reported_once_as_code(torch_zips: dict[str, Path]) -> None:
    (finding,) = scan_zip(torch_zips["script"], file="script.pt")
    assert finding.check == "zip.torchscript" and finding.severity is Severity.HIGH


def test_npz_plain_and_compressed_are_clean(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", a=np.arange(5), b=np.ones((2, 2), dtype=np.float16))
    np.savez_compressed(tmp_path / "c.npz", a=np.arange(5))
    assert scan_zip(tmp_path / "a.npz", file="a.npz") == []
    assert scan_zip(tmp_path / "c.npz", file="c.npz") == []


def test_npz_with_a_malicious_object_array(tmp_path: Path) -> None:
    evil = np.array([Reduces(os.system, "echo owl"), 1], dtype=object)
    np.savez(tmp_path / "e.npz", fine=np.arange(3), evil=evil)
    findings = scan_zip(tmp_path / "e.npz", file="e.npz")
    assert [(f.check, f.severity) for f in findings] == [
        ("npy.object-array", Severity.MEDIUM),
        ("pickle.dangerous-global", Severity.CRITICAL),
    ]
    assert findings[1].location.startswith("evil.npy, opcode offset ")


def test_zip_of_pickles_named_safetensors_is_mislabelled(
    torch_zips: dict[str, Path], tmp_path: Path
) -> None:
    (finding,) = scan_zip(torch_zips["state"], file="model.safetensors")
    assert finding.check == "file.mislabelled" and finding.severity is Severity.MEDIUM
    np.savez(tmp_path / "a.npz", a=np.arange(3))
    assert scan_zip(tmp_path / "a.npz", file="arrays.safetensors") == []


def test_cut_or_damaged_zips_are_unverified(torch_zips: dict[str, Path], tmp_path: Path) -> None:
    data = torch_zips["state"].read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(Unverified):
        scan_zip(tmp_path / "cut.pt", file="cut.pt")
    path = tmp_path / "d.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("model.pkl", pickle.dumps(list(range(2000))))
    raw = bytearray(path.read_bytes())
    raw[60:70] = b"\xff" * 10  # inside the deflate stream of model.pkl
    path.write_bytes(bytes(raw))
    with pytest.raises(Unverified) as raised:
        scan_zip(path, file="d.zip")
    assert raised.value.location.startswith("model.pkl")


def test_damaged_member_after_a_malicious_one_keeps_its_finding(tmp_path: Path) -> None:
    path = tmp_path / "z.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.pkl", EVIL)
        archive.writestr("b.pkl", pickle.dumps(list(range(100)))[:-20])
    with pytest.raises(Unverified) as raised:
        scan_zip(path, file="z.zip")
    assert raised.value.location.startswith("b.pkl, opcode offset ")
    assert [f.check for f in raised.value.findings] == ["pickle.dangerous-global"]


def test_encrypted_member_is_unverified(tmp_path: Path) -> None:
    path = tmp_path / "enc.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", EVIL)
    # zipfile writes no encrypted members, so set the "encrypted" flag bit by hand in the
    # local header and the central directory entry: zipfile then asks for a password.
    raw = bytearray(path.read_bytes())
    central = raw.index(b"PK\x01\x02")
    raw[6] |= 0x1
    raw[central + 8] |= 0x1
    path.write_bytes(bytes(raw))
    with pytest.raises(Unverified) as raised:
        scan_zip(path, file="enc.zip")
    assert raised.value.location == "data.pkl"


def test_oversized_pickle_member_is_unverified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archives, "MAX_PICKLE_MEMBER", 100)
    path = tmp_path / "big.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("data.pkl", pickle.dumps(list(range(1000))))
    with pytest.raises(Unverified, match="at most"):
        scan_zip(path, file="big.zip")


def test_npy_plain_has_no_findings_and_its_data_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "a.npy"
    np.save(path, np.arange(12, dtype=np.float32).reshape(3, 4))
    assert scan_npy(path, file="a.npy") == []
    header = np.lib.format.header_data_from_array_1_0(np.zeros(1))
    header["shape"] = (2**28,)  # 2 GiB of float64 in a sparse file
    with (tmp_path / "huge.npy").open("wb") as out:
        np.lib.format.write_array_header_1_0(out, header)
        out.truncate(out.tell() + 2**31)
    assert scan_npy(tmp_path / "huge.npy", file="huge.npy") == []


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_npy_object_array_is_medium_and_its_pickle_scanned(
    tmp_path: Path, version: tuple[int, int]
) -> None:
    path = tmp_path / "o.npy"
    with path.open("wb") as out:
        np.lib.format.write_array(out, np.array([1, "a", None], dtype=object), version)
    (finding,) = scan_npy(path, file="o.npy")
    assert finding.check == "npy.object-array" and finding.severity is Severity.MEDIUM
    with path.open("wb") as out:
        evil = np.array([Reduces(os.system, "echo owl")], dtype=object)
        np.lib.format.write_array(out, evil, version)
    checks = [f.check for f in scan_npy(path, file="o.npy")]
    assert checks == ["npy.object-array", "pickle.dangerous-global"]


def write_npy(path: Path, header: str, body: bytes = b"") -> Path:
    text = header.encode("latin1") + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + body)
    return path


def test_npy_object_dtype_spelled_any_way_numpy_accepts(tmp_path: Path) -> None:
    # numpy.load reads "object" and object fields of structured dtypes with pickle too.
    for descr in ["'object'", "'|O'", "[('a', '<f4'), ('b', [('c', '|O')])]"]:
        header = f"{{'descr': {descr}, 'fortran_order': False, 'shape': (1,), }}"
        path = write_npy(tmp_path / "x.npy", header, EVIL)
        assert [f.check for f in scan_npy(path, file="x.npy")] == [
            "npy.object-array",
            "pickle.dangerous-global",
        ], descr


def test_npy_header_from_python_2(tmp_path: Path) -> None:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2L, 1L), }"
    path = write_npy(tmp_path / "py2.npy", header, bytes(16))
    assert scan_npy(path, file="py2.npy") == []


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f8', 'shape': (2,), }",  # a key missing
        "{'descr': 'not a dtype', 'fortran_order': False, 'shape': (2,), }",
        "__import__('os').system('echo owl')",  # not a literal: never evaluated
        "[1, 2, 3]",
    ],
)
def test_npy_with_a_bad_header_is_unverified(tmp_path: Path, header: str) -> None:
    with pytest.raises(Unverified):
        scan_npy(write_npy(tmp_path / "bad.npy", header, bytes(16)), file="bad.npy")


def test_npy_cut_off_is_unverified(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(10.0))
    data = (tmp_path / "a.npy").read_bytes()
    for size in (4, 9, 40, len(data) - 8):
        (tmp_path / "cut.npy").write_bytes(data[:size])
        with pytest.raises(Unverified):
            scan_npy(tmp_path / "cut.npy", file="cut.npy")
    path = tmp_path / "o.npy"
    np.save(path, np.array([Reduces(os.system, "echo owl"), list(range(50))], dtype=object))
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(Unverified) as raised:
        scan_npy(path, file="o.npy")
    checks = [f.check for f in raised.value.findings]
    assert checks == ["npy.object-array", "pickle.dangerous-global"]
