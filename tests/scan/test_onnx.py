"""owl scan on ONNX models: the real Piper voice is clean and found by content whatever its
name; a custom operator and external data that leaves the model's folder are high findings,
each beside a benign twin that stays clean; a missing data file is unverified."""

from __future__ import annotations

import os
from pathlib import Path

import onnx
import pytest
from onnx import helper

from owl.scan import Verdict, scan, scan_file
from owl.scan.detect import Kind, sniff
from owl.scan.onnx import builtin_domains
from tests.support.onnx_models import (
    PIPER,
    custom_op,
    local_function,
    model,
    nested,
    relocate,
    save,
    weight,
)


def _checks(path: Path) -> list[tuple[str, str]]:
    entry = scan_file(path)
    assert entry.format == Kind.ONNX
    return [(finding.severity.value, finding.check) for finding in entry.findings]


def test_the_embedded_piper_voice_scans_clean() -> None:
    entry = scan_file(PIPER)
    assert (entry.format, entry.status, entry.findings) == (Kind.ONNX, "scanned", [])
    folder = scan([PIPER.parent])  # with its .onnx.json and model card beside it
    assert folder.verdict == Verdict.CLEAN


@pytest.mark.parametrize("named", ["model.onnx", "voice.bin", "weights.pt", "blob"])
def test_found_by_content_whatever_the_name(tmp_path: Path, named: str) -> None:
    path = save(model(), tmp_path / named)
    assert sniff(path) == Kind.ONNX
    entry = scan_file(path)
    assert (entry.format, entry.status, entry.findings) == (Kind.ONNX, "scanned", [])


@pytest.mark.parametrize("domain", ["my.ops", "ai.onnx.contrib", "org.pytorch.aten"])
def test_a_custom_operator_is_high(tmp_path: Path, domain: str) -> None:
    path = save(custom_op(domain, "Secret"), tmp_path / "m.onnx")
    entry = scan_file(path)
    assert [(f.severity.value, f.check) for f in entry.findings] == [("high", "onnx.custom-op")]
    assert domain in entry.findings[0].reason and "Secret" in entry.findings[0].reason
    assert scan([path]).verdict == Verdict.UNSAFE


def test_the_same_operator_defined_by_a_local_function_is_clean(tmp_path: Path) -> None:
    proto = custom_op("my.ops", "Secret")
    proto.functions.append(local_function("my.ops", "Secret"))
    assert _checks(save(proto, tmp_path / "m.onnx")) == []


def test_a_function_does_not_cover_other_operators_of_its_domain(tmp_path: Path) -> None:
    proto = custom_op("my.ops", "Other")
    proto.functions.append(local_function("my.ops", "Secret"))
    assert _checks(save(proto, tmp_path / "m.onnx")) == [("high", "onnx.custom-op")]


def test_a_custom_operator_deep_in_subgraphs_is_high(tmp_path: Path) -> None:
    hidden = helper.make_node("Secret", ["x"], ["y"], domain="my.ops")
    assert _checks(save(nested(hidden, levels=3), tmp_path / "m.onnx")) == [
        ("high", "onnx.custom-op")
    ]
    plain = helper.make_node("Relu", ["x"], ["y"])
    assert _checks(save(nested(plain, levels=3), tmp_path / "twin.onnx")) == []


@pytest.mark.parametrize("domain", sorted(builtin_domains()))
def test_operators_of_onnx_and_onnxruntime_are_clean(tmp_path: Path, domain: str) -> None:
    proto = custom_op(domain, "Gelu") if domain else model()
    assert _checks(save(proto, tmp_path / "m.onnx")) == []


def _external(folder: Path, *, location: str = "model.onnx.data") -> Path:
    proto = model(initializers=[weight("w", 64)])
    return save(proto, folder / "model.onnx", external=location)


@pytest.mark.parametrize("location", ["model.onnx.data", "weights/w.data", "./w"])
def test_external_data_inside_the_folder_is_clean(tmp_path: Path, location: str) -> None:
    path = _external(tmp_path)  # onnx.save writes only plain names; folders come from tools
    (tmp_path / location).parent.mkdir(exist_ok=True)
    (tmp_path / "model.onnx.data").rename(tmp_path / location)
    relocate(path, location)
    assert _checks(path) == []
    assert scan([tmp_path]).verdict == Verdict.CLEAN


@pytest.mark.parametrize(
    "location",
    [
        "../x",
        "weights/../../x",
        "/etc/passwd",
        "..\\x",
        "C:\\Windows\\win.ini",
        "C:x",
        "\\\\server\\share\\x",
        "model.onnx.data\0.txt",
        "*/_ORT_MEM_ADDR_/*",
    ],
)
def test_external_data_outside_the_folder_is_high(tmp_path: Path, location: str) -> None:
    path = relocate(_external(tmp_path / "model"), location)
    entry = scan_file(path)
    assert [(f.severity.value, f.check) for f in entry.findings] == [
        ("high", "onnx.external-data-escape")
    ]
    assert "'w'" in entry.findings[0].reason
    assert scan([path]).verdict == Verdict.UNSAFE


def test_a_symlink_out_of_the_folder_is_high_and_one_inside_is_clean(tmp_path: Path) -> None:
    outside = tmp_path / "secret"
    outside.write_bytes(bytes(4096))
    path = relocate(_external(tmp_path / "model"), "link")
    (tmp_path / "model" / "link").symlink_to(outside)
    assert _checks(path) == [("high", "onnx.external-data-escape")]
    assert str(outside) in scan_file(path).findings[0].reason

    twin = relocate(_external(tmp_path / "twin"), "link")
    os.symlink("model.onnx.data", tmp_path / "twin" / "link")
    assert _checks(twin) == []


def test_a_folder_of_links_into_one_place_is_clean(tmp_path: Path) -> None:
    """owl's snapshots link every file into blobs/; onnxruntime reads such a folder, and the
    data file lies beside where the model's own link leads, so nothing leaves it."""
    blobs, snapshot = tmp_path / "blobs", tmp_path / "snapshot"
    path = _external(tmp_path / "pulled")
    blobs.mkdir(), snapshot.mkdir()
    path.rename(blobs / "sha256-a")
    (tmp_path / "pulled" / "model.onnx.data").rename(blobs / "sha256-b")
    (snapshot / "model.onnx").symlink_to(blobs / "sha256-a")
    (snapshot / "model.onnx.data").symlink_to(blobs / "sha256-b")
    assert _checks(snapshot / "model.onnx") == []


def test_a_missing_data_file_is_unverified(tmp_path: Path) -> None:
    path = _external(tmp_path)
    (tmp_path / "model.onnx.data").unlink()
    entry = scan_file(path)
    assert (entry.status, entry.findings) == ("unverified", [])
    assert "'model.onnx.data' is missing" in (entry.error or "")
    assert scan([path]).verdict == Verdict.UNVERIFIED


def test_a_short_data_file_is_unverified(tmp_path: Path) -> None:
    path = _external(tmp_path)
    data = tmp_path / "model.onnx.data"
    data.write_bytes(data.read_bytes()[:100])
    entry = scan_file(path)
    assert entry.status == "unverified" and "truncated" in (entry.error or "")


def test_an_escape_is_reported_even_when_another_data_file_is_missing(tmp_path: Path) -> None:
    proto = model(initializers=[weight("w", 64)])
    proto.graph.initializer.append(weight("v", 64))
    path = save(proto, tmp_path / "model.onnx", external="model.onnx.data")
    (tmp_path / "model.onnx.data").unlink()
    edited = onnx.load(path, load_external_data=False)
    edited.graph.initializer[0].external_data[0].value = "../elsewhere.data"
    path.write_bytes(edited.SerializeToString())
    entry = scan_file(path)
    assert entry.status == "unverified"
    assert [finding.check for finding in entry.findings] == ["onnx.external-data-escape"]
    assert scan([path]).verdict == Verdict.UNSAFE


def test_a_cut_model_is_unverified_with_its_reason(tmp_path: Path) -> None:
    path = tmp_path / "voice.onnx"
    path.write_bytes(PIPER.read_bytes()[:20_000])
    entry = scan_file(path)
    assert (entry.format, entry.status) == (Kind.ONNX, "unverified")
    assert "truncated" in (entry.error or "")
