"""Pickle scanning: real checkpoints come out clean, every way of importing code is caught.

The malicious pickles are written by pickle itself (objects whose __reduce__ returns a
dangerous callable) or assembled opcode by opcode; a recording unpickler proves each
hand-made one really imports what the test says, without running anything.
"""

from __future__ import annotations

import builtins
import collections
import io
import os
import pickle
import runpy
import subprocess
import webbrowser
from pathlib import Path

import numpy as np
import pytest

from owl.scan.findings import Finding, Severity, Unverified
from owl.scan.pickles import (
    looks_like_pickle,
    scan_pickle,
    scan_pickle_bytes,
)

# --- building pickles ------------------------------------------------------------------


class Reduces:
    """Pickles as a call of `target(*args)`: the shape of every pickle exploit."""

    def __init__(self, target: object, *args: object) -> None:
        self.target, self.args = target, args

    def __reduce__(self) -> tuple:
        return self.target, self.args


def su(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    data = text.encode()
    return b"\x8c" + bytes([len(data)]) + data


PROTO4, STOP, MEMOIZE, POP, STACK_GLOBAL = b"\x80\x04", b".", b"\x94", b"0", b"\x93"
TUPLE1, REDUCE, EMPTY_TUPLE = b"\x85", b"R", b")"


def binput(index: int) -> bytes:
    return b"q" + bytes([index])


def binget(index: int) -> bytes:
    return b"h" + bytes([index])


def call(head: bytes) -> bytes:
    """`head` pushes a callable; call it with ("echo owl",) and stop."""
    return head + su("echo owl") + TUPLE1 + REDUCE + STOP


MEMO_TRICK = PROTO4 + call(
    su("os") + MEMOIZE + POP + su("junk") + su("system") + binput(7) + POP + POP
    + binget(0) + binget(7) + STACK_GLOBAL
)  # fmt: skip
COMPUTED = PROTO4 + call(
    b"cbuiltins\nstr\n" + su("os") + TUPLE1 + REDUCE + su("system") + STACK_GLOBAL
)
DOTTED = PROTO4 + call(su("torch.serialization") + su("os.system") + STACK_GLOBAL)
DUNDER = PROTO4 + call(su("collections") + su("OrderedDict.__init__.__globals__") + STACK_GLOBAL)


def malicious_pickles() -> dict[str, bytes]:
    """Every way this suite knows to make a pickle run something, by name."""
    corpus = {}
    targets = {
        "os.system": Reduces(os.system, "echo owl"),
        "eval": Reduces(builtins.eval, "1+1"),
        "exec": Reduces(builtins.exec, "x = 1"),
        "popen": Reduces(subprocess.Popen, ["true"]),
        "runpy": Reduces(runpy.run_path, "/nonexistent"),
        "webbrowser": Reduces(webbrowser.open, "http://127.0.0.1:9/"),
        "getattr": Reduces(builtins.getattr, Reduces(builtins.__import__, "os"), "system"),
    }
    for name, obj in targets.items():
        for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
            corpus[f"{name}-p{protocol}"] = pickle.dumps({"weights": [1, 2], "x": obj}, protocol)
    corpus["global-p0"] = b"cos\nsystem\n(S'echo owl'\ntR."
    corpus["inst-p0"] = b"(S'echo owl'\nios\nsystem\n."
    corpus["python2-commands"] = b"ccommands\ngetoutput\n(S'id'\ntR."
    corpus["unknown-module"] = b"\x80\x02cevil_module\nrun\n)R."
    corpus["memo-trick"] = MEMO_TRICK
    corpus["computed"] = COMPUTED
    corpus["dotted-name"] = DOTTED
    corpus["dunder"] = DUNDER
    corpus["extension"] = b"\x80\x02\x82\x07)R."
    corpus["long-string-first"] = (
        b"X" + (100).to_bytes(4, "little") + b"a" * 100 + b"0" + (b"cos\nsystem\n(S'echo owl'\ntR.")
    )
    corpus["appended"] = pickle.dumps({"w": 1}) + pickle.dumps(Reduces(os.system, "id"))
    return corpus


def benign_objects() -> dict[str, object]:
    """What real checkpoints and array pickles hold."""
    return {
        "numpy": {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float64(2.5)},
        "dtypes": [np.dtype("f2"), np.zeros(3, dtype=np.int8), np.ones(2, dtype=bool)],
        "containers": collections.OrderedDict(
            s={1, 2}, f=frozenset({3}), b=b"\x00\xff", ba=bytearray(b"x"), c=1 + 2j
        ),
        "slice": [slice(1, 5, 2), None, True, 1.5, "text", 2**80],
    }


def findings_of(data: bytes) -> list[Finding]:
    return scan_pickle_bytes(data, file="x.pkl")


def severities(findings: list[Finding]) -> set[Severity]:
    return {f.severity for f in findings}


def recorded_imports(data: bytes) -> list[str]:
    """What the real unpickler imports from `data`; every import but str is made inert."""
    imports = []

    class Recorder(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> object:
            imports.append(f"{module}.{name}")
            return str if (module, name) == ("builtins", "str") else (lambda *a: None)

    Recorder(io.BytesIO(data)).load()
    return imports


# --- torch and numpy files -------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real torch.save files: the zip format, the legacy format, and a malicious one."""
    import torch
    from torch import nn

    folder = tmp_path_factory.mktemp("checkpoints")
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Embedding(5, 2))
    state = model.state_dict()
    for dtype in (torch.float16, torch.bfloat16, torch.int8, torch.bool, torch.complex64):
        state[f"extra.{dtype}"] = torch.ones(3, dtype=dtype)
    state["param"] = nn.Parameter(torch.zeros(2))
    paths = {
        "zip": folder / "pytorch_model.bin",
        "legacy": folder / "legacy.pt",
        "legacy-evil": folder / "legacy-evil.pt",
        "optimizer": folder / "optimizer.pt",
        "rng": folder / "rng_state.pth",
    }
    torch.save(state, paths["zip"])
    # What a training run writes beside the weights (Hugging Face Trainer's checkpoints).
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model[1].train()
    model[0](torch.ones(2, 4)).sum().backward()
    optimizer.step()
    torch.save(optimizer.state_dict(), paths["optimizer"], _use_new_zipfile_serialization=False)
    rng = {"python": __import__("random").getstate(), "numpy": np.random.get_state()}
    rng["cpu"] = torch.get_rng_state()
    torch.save(rng, paths["rng"], _use_new_zipfile_serialization=False)
    torch.save(state, paths["legacy"], _use_new_zipfile_serialization=False)
    evil = {"state": state, "hook": Reduces(os.system, "echo owl")}
    torch.save(evil, paths["legacy-evil"], _use_new_zipfile_serialization=False)
    return paths


@pytest.mark.parametrize("name", ["legacy", "optimizer", "rng"])
def test_legacy_torch_checkpoints_are_clean(checkpoints: dict[str, Path], name: str) -> None:
    assert scan_pickle(checkpoints[name], file=checkpoints[name].name) == []


def test_legacy_torch_scan_stops_before_the_storage_bytes(
    checkpoints: dict[str, Path], tmp_path: Path
) -> None:
    # Storage bytes that decode as a malicious pickle are still never unpickled by torch.
    path = tmp_path / "legacy.pt"
    path.write_bytes(checkpoints["legacy"].read_bytes() + MEMO_TRICK)
    assert scan_pickle(path, file="legacy.pt") == []
    with path.open("ab") as grow:  # 2 GB of sparse storage: scanning must not read it
        grow.truncate(2**31)
    assert scan_pickle(path, file="legacy.pt") == []


def test_legacy_torch_with_a_payload_is_critical(checkpoints: dict[str, Path]) -> None:
    findings = scan_pickle(checkpoints["legacy-evil"], file="legacy-evil.pt")
    assert [f.check for f in findings] == ["pickle.dangerous-global"]
    assert findings[0].severity is Severity.CRITICAL
    assert "posix.system" in findings[0].reason


def test_legacy_torch_cut_short_is_unverified(checkpoints: dict[str, Path], tmp_path: Path) -> None:
    data = checkpoints["legacy"].read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[:40])  # inside the third of five pickles
    with pytest.raises(Unverified) as raised:
        scan_pickle(path, file="cut.pt")
    assert "opcode offset" in raised.value.location


def test_data_pkl_of_torch_zip_is_clean(checkpoints: dict[str, Path]) -> None:
    import zipfile

    with zipfile.ZipFile(checkpoints["zip"]) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        assert scan_pickle_bytes(archive.read(name), file="m.bin", where=name) == []


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("name", sorted(benign_objects()))
def test_benign_pickles_have_no_findings(name: str, protocol: int) -> None:
    data = pickle.dumps(benign_objects()[name], protocol=protocol)
    assert looks_like_pickle(data[:64])
    assert findings_of(data) == []


@pytest.mark.parametrize("name", sorted(malicious_pickles()))
def test_malicious_pickles_are_caught(name: str) -> None:
    data = malicious_pickles()[name]
    assert looks_like_pickle(data[:64])
    findings = findings_of(data)
    assert severities(findings) & {Severity.CRITICAL, Severity.HIGH}, findings
    expected = Severity.HIGH if name in ("unknown-module", "extension") else Severity.CRITICAL
    assert expected in severities(findings)


def test_hand_made_pickles_really_import_what_they_claim() -> None:
    assert recorded_imports(MEMO_TRICK) == ["os.system"]
    assert recorded_imports(COMPUTED) == ["builtins.str", "os.system"]
    assert recorded_imports(DOTTED) == ["torch.serialization.os.system"]
    assert recorded_imports(malicious_pickles()["inst-p0"]) == ["os.system"]
    assert recorded_imports(malicious_pickles()["long-string-first"]) == ["os.system"]


def test_finding_names_the_global_and_its_offset() -> None:
    data = b"cos\nsystem\n(S'echo owl'\ntR."
    (finding,) = findings_of(data)
    assert finding == Finding(
        severity=Severity.CRITICAL,
        check="pickle.dangerous-global",
        file="x.pkl",
        location="opcode offset 0",
        reason=finding.reason,
    )
    assert finding.reason.startswith("imports os.system, which ")


def test_memo_trick_resolves_through_the_memo() -> None:
    (finding,) = findings_of(MEMO_TRICK)
    assert "os.system" in finding.reason
    assert finding.location == f"opcode offset {MEMO_TRICK.index(STACK_GLOBAL)}"


def test_computed_import_is_critical() -> None:
    checks = {f.check: f.severity for f in findings_of(COMPUTED)}
    assert checks == {
        "pickle.unknown-global": Severity.HIGH,  # builtins.str
        "pickle.computed-import": Severity.CRITICAL,
    }


def test_protocol_2_names_are_mapped_like_pickle_maps_them() -> None:
    data = pickle.dumps(Reduces(builtins.eval, "1"), protocol=2)
    assert b"__builtin__" in data
    (finding,) = findings_of(data)
    assert "builtins.eval (written __builtin__.eval)" in finding.reason
    (finding,) = findings_of(malicious_pickles()["python2-commands"])
    assert "subprocess.getoutput" in finding.reason


def test_dotted_names_that_reach_os_are_critical() -> None:
    (finding,) = findings_of(DOTTED)
    assert finding.severity is Severity.CRITICAL
    (finding,) = findings_of(DUNDER)
    assert finding.severity is Severity.CRITICAL and "__init__" in finding.reason


def test_unknown_global_is_high_and_counted_once_per_pickle() -> None:
    data = b"(" + b"cmylib\nThing\n" * 1000 + b"l."
    (finding,) = findings_of(data)
    assert finding.severity is Severity.HIGH and finding.check == "pickle.unknown-global"
    assert finding.location == "opcode offset 1"
    assert finding.reason.endswith("(1000 times)")


def test_a_class_outside_the_allowlist_is_high() -> None:
    # collections.Counter is harmless, but only what checkpoints need is allowed.
    data = pickle.dumps(collections.Counter(a=1), protocol=4)
    (finding,) = findings_of(data)
    assert "collections.Counter" in finding.reason and finding.severity is Severity.HIGH


def test_second_pickle_after_a_benign_one_is_scanned() -> None:
    benign = pickle.dumps({"w": np.zeros(3)})
    assert findings_of(benign + benign) == []
    (finding,) = findings_of(benign + pickle.dumps(Reduces(os.system, "id")))
    assert finding.severity is Severity.CRITICAL
    assert int(finding.location.rsplit(" ", 1)[1]) >= len(benign)


def test_trailing_bytes_that_are_not_a_pickle_are_a_low_finding() -> None:
    tail = b"\x00\xff not a pickle"
    (finding,) = findings_of(pickle.dumps([1, 2]) + tail)
    assert finding.severity is Severity.LOW and finding.check == "pickle.trailing-data"
    assert finding.reason.startswith(f"{len(tail)} bytes after the last pickle are not")


def test_damage_keeps_the_mislabelled_finding(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps(list(range(100)))[:-5])
    with pytest.raises(Unverified) as raised:
        scan_pickle(path, file="model.safetensors")
    assert [f.check for f in raised.value.findings] == ["file.mislabelled"]


def test_pickle_named_like_a_safe_format_is_mislabelled(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"w": 1}))
    (finding,) = scan_pickle(path, file="model.safetensors")
    assert finding.check == "file.mislabelled" and finding.severity is Severity.MEDIUM
    (tmp_path / "model.bin").write_bytes(pickle.dumps({"w": 1}))
    assert scan_pickle(tmp_path / "model.bin", file="model.bin") == []


def test_unreadable_file_is_unverified(tmp_path: Path) -> None:
    with pytest.raises(Unverified):
        scan_pickle(tmp_path / "missing.pkl", file="missing.pkl")


@pytest.mark.parametrize(
    "head",
    [
        b"hello world, this is a README\n",
        b'{"architectures": ["LlamaForCausalLM"]}',
        b"little",
        b"3\n",
        b"1237006439173137860502639917090286102338",
        b"GGUF\x03\x00\x00\x00" + bytes(24),
        b"PK\x03\x04\x14\x00\x00\x00\x08\x00",
        b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }",
        b'\x08\x00\x00\x00\x00\x00\x00\x00{"w":{}}',  # safetensors
        b"copyright 2024 someone\nall rights reserved\n",
        b"\x80\x09\x95",  # protocol 9 does not exist
        b"",
    ],
)
def test_other_files_do_not_look_like_pickles(head: bytes) -> None:
    assert not looks_like_pickle(head)


def test_pickle_heads_are_recognised_from_16_bytes() -> None:
    for data in [*malicious_pickles().values(), pickle.dumps(benign_objects(), protocol=0)]:
        assert looks_like_pickle(data[:16]), data[:16]


def test_differential_with_picklescan() -> None:
    """Whatever picklescan calls dangerous, owl reports as critical or high."""
    from picklescan.scanner import SafetyLevel
    from picklescan.scanner import scan_pickle_bytes as picklescan_scan

    dangerous = 0
    for name, data in malicious_pickles().items():
        result = picklescan_scan(io.BytesIO(data), "x")
        if any(g.safety is SafetyLevel.Dangerous for g in result.globals):
            dangerous += 1
            assert severities(findings_of(data)) & {Severity.CRITICAL, Severity.HIGH}, name
    assert dangerous >= 40  # the comparison means something only if picklescan agrees often
