"""torch.save's tar format (torch < 0.4) and other tars: every pickle is scanned, raw
storage bytes are stepped over as torch reads them, and unsafe members are findings.

Current torch cannot write the format, so the tests build it by hand (tarfile, pickle,
struct), as torch/serialization.py's legacy_load reads it; torch.load reading the benign
file back proves the layout is the real one.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from owl.scan import scan_file
from owl.scan import torch_tar as torch_tar_module
from owl.scan.findings import Severity, Unverified
from owl.scan.torch_tar import ELEMENT_SIZES, looks_like_tar, scan_tar
from tests.scan.test_joblib_files import imports_of
from tests.scan.test_pickles import MEMO_TRICK, Reduces

EVIL = Reduces(os.system, "echo owl")
DATA = np.arange(6, dtype=np.float32)


class TensorRef:
    """Stands in the main pickle for tensor `key`, as torch's persistent ids did."""

    def __init__(self, key: int) -> None:
        self.key = key


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj: object) -> object:
        return str(obj.key) if isinstance(obj, TensorRef) else None


def p2(obj: object) -> bytes:
    out = io.BytesIO()
    _Pickler(out, protocol=2).dump(obj)
    return out.getvalue()


def storages(storage_type: object = torch.FloatStorage, data: bytes = DATA.tobytes()) -> bytes:
    """One storage of 6 floats: count, (key, location, type), int64 elements, the bytes."""
    head = p2(1) + p2((0, "cpu", storage_type))
    return head + struct.pack("<q", len(data) // 4) + data + p2([])


def tensors(ndim: int = 2) -> bytes:
    """One 2x3 tensor on storage 0: count, (key, storage, type), ndim, sizes, strides."""
    raw = struct.pack("<i", ndim) + bytes(4) + struct.pack("<4q", 2, 3, 3, 1)
    return p2(1) + p2((1, 0, torch.FloatTensor)) + raw + struct.pack("<q", 0)


def legacy_tar(path: Path, obj: object = None, **members: bytes) -> Path:
    """A torch 0.3 checkpoint of `obj` (by default {"w": the tensor}); `members` replace
    or add members by name."""
    contents = {
        "sys_info": p2({"protocol_version": 1001, "little_endian": True}),
        "pickle": p2({"w": TensorRef(1)} if obj is None else obj),
        "storages": storages(),
        "tensors": tensors(),
        **members,
    }
    with tarfile.open(path, "w:", format=tarfile.PAX_FORMAT) as tar:
        for name, blob in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


def checks(path: Path) -> list[str]:
    return [f.check for f in scan_tar(path, file=path.name)]


def test_a_hand_built_legacy_checkpoint_is_what_torch_loads_and_is_clean(tmp_path: Path) -> None:
    path = legacy_tar(tmp_path / "model.pt")
    loaded = torch.load(path, weights_only=False)
    assert torch.equal(loaded["w"], torch.from_numpy(DATA).reshape(2, 3))
    assert looks_like_tar(path)
    report = scan_file(path)
    assert (report.format, report.status, report.findings) == ("tar", "scanned", [])


def test_a_shell_call_in_the_object_pickle_is_critical(tmp_path: Path) -> None:
    path = legacy_tar(tmp_path / "evil.pt", {"w": TensorRef(1), "x": EVIL})
    (finding,) = scan_tar(path, file="evil.pt")
    assert finding.severity is Severity.CRITICAL
    assert finding.location.startswith("pickle, opcode offset ")


def test_pickles_torch_never_reads_are_scanned_too(tmp_path: Path) -> None:
    path = legacy_tar(tmp_path / "s.pt", sys_info=p2(EVIL), **{"notes.pkl": p2([1])})
    (finding,) = scan_tar(path, file="s.pt")
    assert finding.location.startswith("sys_info, opcode offset")


def test_raw_storage_bytes_are_stepped_over(tmp_path: Path) -> None:
    # torch reads these as floats: a pickle in them never runs.
    raw = MEMO_TRICK + bytes(-len(MEMO_TRICK) % 4)
    path = legacy_tar(tmp_path / "raw.pt", storages=storages(data=raw))
    assert checks(path) == []
    twin = legacy_tar(tmp_path / "twin.pt", storages=storages() + MEMO_TRICK)
    assert checks(twin) == ["pickle.dangerous-global"]  # past what torch reads: a pickle


def test_a_storage_type_that_is_a_shell_call_is_found(tmp_path: Path) -> None:
    path = legacy_tar(tmp_path / "t.pt", storages=storages(storage_type=os.system))
    with pytest.raises(Unverified, match="storage type torch knows") as raised:
        scan_tar(path, file="t.pt")
    assert [f.severity for f in raised.value.findings] == [Severity.CRITICAL]


def test_the_element_sizes_are_torchs(tmp_path: Path) -> None:
    for name, size in ELEMENT_SIZES.items():
        module, _, kind = name.rpartition(".")
        storage = getattr(torch.cuda if module == "torch.cuda" else torch, kind, None)
        if storage is not None:
            assert torch._utils._element_size(storage._dtype) == size, name


@pytest.mark.parametrize(
    ("member", "blob"),
    [
        ("storages", p2(5) + p2((0, "cpu", torch.FloatStorage)) + struct.pack("<q", 10**6)),
        ("storages", p2("five")),
        ("storages", p2(2) + p2((0, "cpu", torch.FloatStorage)) + struct.pack("<q", -1)),
        ("tensors", tensors(ndim=40)),
        ("tensors", p2(1) + p2((1, 0, torch.FloatTensor)) + b"\x02\x00"),
        ("pickle", p2({"w": list(range(50))})[:-9]),
    ],
)
def test_layouts_that_do_not_add_up_are_unverified(
    tmp_path: Path, member: str, blob: bytes
) -> None:
    path = legacy_tar(tmp_path / "bad.pt", **{member: blob})
    with pytest.raises(Unverified) as raised:
        scan_tar(path, file="bad.pt")
    assert raised.value.location.startswith(member)


def add(path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    with tarfile.open(path, "a:") as tar:
        tar.addfile(info, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    ("kind", "name", "link"),
    [
        (tarfile.SYMTYPE, "storages", "/etc/passwd"),
        (tarfile.LNKTYPE, "extra", "pickle"),
        (tarfile.CHRTYPE, "dev", ""),
        (tarfile.FIFOTYPE, "fifo", ""),
        (tarfile.REGTYPE, "/etc/cron.d/x", ""),
        (tarfile.REGTYPE, "../../escape", ""),
    ],
)
def test_unsafe_members_are_high_findings(
    tmp_path: Path, kind: bytes, name: str, link: str
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    path = add(legacy_tar(tmp_path / "m.pt"), info)
    (finding,) = scan_tar(path, file="m.pt")
    assert (finding.check, finding.severity, finding.location) == (
        "tar.unsafe-member",
        Severity.HIGH,
        name,
    )


def test_a_huge_extended_header_is_unverified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch_tar_module, "MAX_HEADER", 4096)
    path = add(legacy_tar(tmp_path / "h.pt"), tarfile.TarInfo("x" * 10_000), b"1")
    with pytest.raises(Unverified, match="pax or long name"):
        scan_tar(path, file="h.pt")


def test_too_many_members_is_unverified(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch_tar_module, "MAX_MEMBERS", 3)
    with pytest.raises(Unverified, match="more than 3 members"):
        scan_tar(legacy_tar(tmp_path / "n.pt"), file="n.pt")


def test_a_tar_cut_inside_a_member_is_unverified(tmp_path: Path) -> None:
    data = legacy_tar(tmp_path / "c.pt").read_bytes()
    middle = data.index(DATA.tobytes()) + 10  # inside the storage's bytes
    (tmp_path / "cut.pt").write_bytes(data[:middle])
    assert scan_file(tmp_path / "cut.pt").status == "unverified"
    # Cut in the zero blocks that end a tar, it is still whole, for tarfile and torch.
    (tmp_path / "end.pt").write_bytes(data.rstrip(b"\0") + bytes(512))
    assert torch.load(tmp_path / "end.pt", weights_only=False)["w"].shape == (2, 3)
    assert scan_file(tmp_path / "end.pt").status == "scanned"


def test_an_old_tar_without_the_ustar_magic_is_still_a_tar(tmp_path: Path) -> None:
    # tarfile (and so torch.load) reads v7 tars, which have no magic: owl must too.
    path = tmp_path / "v7.pt"
    with tarfile.open(path, "w:", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo("pickle")
        blob = p2(EVIL)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
    header = bytearray(path.read_bytes())
    header[257:265] = bytes(8)  # no magic, no version
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header[:512])
    path.write_bytes(bytes(header))
    assert tarfile.open(path).getnames() == ["pickle"]
    assert scan_file(path).format == "tar"
    assert checks(path) == ["pickle.dangerous-global"]


def test_a_file_that_is_a_tar_and_a_pickle_is_scanned_both_ways(tmp_path: Path) -> None:
    # The first member's name is a pickle: pickle.load runs it, torch.load reads the tar.
    payload = "cos\nsystem\n(S'echo owl'\ntR."
    path = tmp_path / "both.pt"
    with tarfile.open(path, "w:", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo(payload), None)
    assert "os.system" in imports_of(path.read_bytes()) and looks_like_tar(path)
    twin = tmp_path / "name.pt"
    with tarfile.open(twin, "w:", format=tarfile.GNU_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("sys_info"), None)
    assert checks(twin) == []
    assert "pickle.dangerous-global" in checks(path)


def test_a_tar_of_pickles_named_safetensors_is_mislabelled(tmp_path: Path) -> None:
    path = legacy_tar(tmp_path / "model.safetensors")
    assert checks(path) == ["file.mislabelled"]
