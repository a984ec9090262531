"""Reader plugins through a real entry point: a distribution (module and dist-info) put on
sys.path, found by importlib.metadata as an installed package would be."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from owl.docs.files import Candidate, walk
from owl.docs.plugins import plugin_readers
from owl.docs.readers import read
from owl.docs.types import Page, Skipped
from owl.errors import DocumentError


def candidate(path: Path) -> Candidate:
    [found] = walk([path])
    assert isinstance(found, Candidate), found
    return found


PLUGIN = """
from owl.docs.types import Page

def shout(path):
    return path.read_text().upper()

def paged(path):
    return [Page(1, "first page"), Page(2, "second page")]

def broken(path):
    raise RuntimeError("cannot parse this")

def wrong(path):
    return 42
"""

ENTRY_POINTS = """\
[owl.document_readers]
shout = owl_reader_probe:shout
.Paged = owl_reader_probe:paged
broken = owl_reader_probe:broken
wrong = owl_reader_probe:wrong
gone = owl_reader_probe_missing:read
md = owl_reader_probe:shout
"""


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An installed distribution (module + dist-info on sys.path) with reader entry points."""
    site = tmp_path / "site"
    info = site / "owl_reader_probe-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "owl_reader_probe.py").write_text(PLUGIN)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: owl-reader-probe\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(sys.modules, "owl_reader_probe", raising=False)
    yield site
    sys.modules.pop("owl_reader_probe", None)


def test_plugin_reads_its_extension(plugin_site: Path, tmp_path: Path):
    path = tmp_path / "loud.shout"
    path.write_text("quiet words\r\n")
    found = candidate(path)
    assert (found.kind, found.display) == ("shout", "loud.shout")
    assert read(found) == [Page(None, "QUIET WORDS\n")]


def test_plugin_pages_keep_their_numbers(plugin_site: Path, tmp_path: Path):
    path = tmp_path / "book.PAGED"
    path.write_bytes(b"\x00binary is the plugin's business\x00")
    assert read(candidate(path)) == [Page(1, "first page"), Page(2, "second page")]


@pytest.mark.parametrize(
    ("extension", "reason"),
    [
        (
            "broken",
            r"^the \.broken reader \(owl_reader_probe:broken\) failed: RuntimeError: cannot",
        ),
        ("wrong", r"returned int, not a str or a list of owl\.docs\.types\.Page; fix the plugin"),
        ("gone", r"^the reader plugin for \.gone .* does not load: ModuleNotFoundError"),
    ],
)
def test_a_failing_plugin_is_a_document_error(
    plugin_site: Path, tmp_path: Path, extension: str, reason: str
):
    path = tmp_path / f"file.{extension}"
    path.write_text("anything")
    with pytest.raises(DocumentError, match=reason):
        read(candidate(path))


def test_plugin_cannot_replace_a_builtin_reader(plugin_site: Path, tmp_path: Path):
    path = tmp_path / "notes.md"
    path.write_text("# calm\n")
    found = candidate(path)
    assert found.kind == "markdown"
    assert read(found) == [Page(None, "# calm\n")]


def test_skip_reason_lists_plugin_extensions(plugin_site: Path, tmp_path: Path):
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"PK\x03\x04")
    [skipped] = walk([path])
    assert skipped == Skipped(
        "sheet.xlsx",
        "unsupported type .xlsx (owl reads .md .markdown .txt .text .rst .html .htm .pdf "
        ".broken .gone .paged .shout .wrong)",
    )


def test_entry_point_names_become_extensions(plugin_site: Path):
    found = plugin_readers()
    assert {"shout", "paged", "broken", "wrong", "gone", "md"} <= set(found)
    assert found["paged"].value == "owl_reader_probe:paged"
