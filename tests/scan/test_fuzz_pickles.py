"""Fuzzing the pickle, zip and .npy readers: only findings or Unverified ever come out.

Random bytes, and real files (benign and malicious pickles, torch checkpoints in both
formats, .npy and .npz) with bytes flipped, inserted, deleted and cut off. A generated
differential against picklescan checks every import form at every protocol.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owl.scan.archives import scan_npy, scan_zip
from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.pickle_policy import policy
from owl.scan.pickles import looks_like_pickle, scan_pickle, scan_pickle_bytes
from tests.scan.test_pickles import Reduces, benign_objects, malicious_pickles, su

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# pickletools warns about bad escapes in fuzzed protocol 0 strings, as pickle itself does.
pytestmark = pytest.mark.filterwarnings("ignore:invalid escape sequence:DeprecationWarning")


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[bytes]]:
    """Real files to mutate, by the reader that takes them."""
    import torch
    from torch import nn

    folder = tmp_path_factory.mktemp("seeds")
    state = nn.Linear(3, 2).state_dict()
    state["half"] = torch.ones(2, dtype=torch.float16)
    torch.save(state, folder / "zip.pt")
    torch.save(state, folder / "legacy.pt", _use_new_zipfile_serialization=False)
    np.save(folder / "plain.npy", np.arange(6, dtype=np.int16))
    np.save(folder / "object.npy", np.array([Reduces(os.system, "echo owl"), "x"], dtype=object))
    np.savez(folder / "arrays.npz", a=np.arange(3), o=np.array([None, 1], dtype=object))
    pickles = [pickle.dumps(obj, p) for obj in benign_objects().values() for p in (0, 2, 4, 5)]
    pickles += list(malicious_pickles().values())[::3]
    pickles.append((folder / "legacy.pt").read_bytes())
    return {
        "pickle": pickles,
        "zip": [(folder / "zip.pt").read_bytes(), (folder / "arrays.npz").read_bytes()],
        "npy": [(folder / "plain.npy").read_bytes(), (folder / "object.npy").read_bytes()],
    }


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz") / "sample.bin"


@st.composite
def mutations(draw: st.DrawFn, originals: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(originals)))
    for _ in range(draw(st.integers(1, 4))):
        if not data:
            break
        at = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        if kind == "flip":
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=9))
        else:
            del data[at : at + draw(st.integers(1, 9))]
    return bytes(data)


def assert_findings_or_unverified(scan, *args: object, **kwargs: object) -> None:
    try:
        result = scan(*args, **kwargs)
    except Unverified as error:
        assert isinstance(error.reason, str) and error.reason
        return
    assert isinstance(result, list)
    assert all(isinstance(finding, Finding) for finding in result)


def scan_everything(data: bytes, path: Path) -> None:
    assert isinstance(looks_like_pickle(data[:64]), bool)
    assert_findings_or_unverified(scan_pickle_bytes, data, file="f", where="m")
    path.write_bytes(data)
    for scan in (scan_pickle, scan_zip, scan_npy):
        assert_findings_or_unverified(scan, path, file="model.safetensors")


@FUZZ
@given(data=st.binary(max_size=600))
def test_random_bytes(data: bytes, scratch: Path) -> None:
    scan_everything(data, scratch)


@FUZZ
@given(data=st.data())
def test_mutated_pickles(data: st.DataObject, seeds: dict, scratch: Path) -> None:
    sample = data.draw(mutations(seeds["pickle"]))
    assert_findings_or_unverified(scan_pickle_bytes, sample, file="f")
    scratch.write_bytes(sample)
    assert_findings_or_unverified(scan_pickle, scratch, file="f.pkl")


@FUZZ
@given(data=st.data())
def test_mutated_archives_and_arrays(data: st.DataObject, seeds: dict, scratch: Path) -> None:
    scan_everything(data.draw(mutations(seeds["zip"] + seeds["npy"])), scratch)


def picklescan_globals() -> list[tuple[str, str]]:
    """One (module, name) per entry of picklescan's denylist."""
    from picklescan.scanner import _unsafe_globals

    pairs = []
    for module, names in _unsafe_globals.items():
        if names == "*":
            pairs.append((module, "system"))
        else:
            pairs += [(module, name) for name in ([names] if isinstance(names, str) else names)]
    return pairs


GLOBALS = sorted(
    set(picklescan_globals())
    | {tuple(name.rsplit(".", 1)) for name in policy().allowed}
    | {("mylib", "Thing"), ("__main__", "Model"), ("numpy", "load"), ("builtins", "print")}
)


def encode(module: str, name: str, form: str) -> bytes:
    """A pickle that imports module.name in the given form and calls it."""
    if form == "global-p0":
        return f"c{module}\n{name}\n(tR.".encode()
    if form == "inst-p0":
        return f"(i{module}\n{name}\n.".encode()
    if form == "global-p2":
        return b"\x80\x02" + f"c{module}\n{name}\n".encode() + b")R."
    memo = form == "memo-p4"
    head = su(module) + (b"\x94" if memo else b"") + su(name) + (b"\x94" if memo else b"")
    if memo:  # drop both and fetch them back from the memo
        head += b"00h\x00h\x01"
    return b"\x80\x04" + head + b"\x93)R."


@settings(max_examples=200, deadline=None)
@given(
    pair=st.sampled_from(GLOBALS),
    form=st.sampled_from(["global-p0", "inst-p0", "global-p2", "stack-p4", "memo-p4"]),
)
def test_differential_generated(pair: tuple[str, str], form: str) -> None:
    from picklescan.scanner import SafetyLevel
    from picklescan.scanner import scan_pickle_bytes as picklescan_scan

    data = encode(*pair, form)
    found = {f.severity for f in scan_pickle_bytes(data, file="x")}
    theirs = picklescan_scan(io.BytesIO(data), "x").globals
    if any(g.safety is SafetyLevel.Dangerous for g in theirs):
        assert found & {Severity.CRITICAL, Severity.HIGH}, (pair, form)
    allowed = ".".join(pair) in policy().allowed
    assert bool(found) is not allowed, (pair, form, found)
