"""The walk over real folders: what is read, what is skipped and why, and never a file outside
the folders named."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from owl.docs.files import Candidate, Limits, read_bytes, walk
from owl.docs.types import Skipped
from owl.errors import ConfigError, DocumentError


def results(roots: list[Path], **limits: int) -> dict[str, Candidate | Skipped]:
    """What the walk says of each file, by its display name."""
    found = list(walk(roots, limits=Limits(**limits)))
    return {item.display if isinstance(item, Candidate) else item.path: item for item in found}


def reasons(roots: list[Path], **limits: int) -> dict[str, str]:
    return {
        name: item.reason
        for name, item in results(roots, **limits).items()
        if isinstance(item, Skipped)
    }


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(out, format="PNG")
    return out.getvalue()


@pytest.fixture
def notes(tmp_path: Path) -> Path:
    root = tmp_path / "notes"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "b.md").write_text("# B\n")
    (root / "a.txt").write_text("a\n")
    (root / "sub" / "c.html").write_text("<p>c</p>")
    (root / "sub" / "deeper" / "d.rst").write_text("d\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD.md").write_text("hidden folder\n")
    (root / ".draft.md").write_text("hidden file\n")
    return root


def test_walk_is_recursive_sorted_and_passes_over_hidden_files(notes: Path):
    found = list(walk([notes]))
    assert [(item.display, item.kind, item.size) for item in found] == [
        ("notes/a.txt", "text", 2),
        ("notes/b.md", "markdown", 4),
        ("notes/sub/c.html", "html", 8),
        ("notes/sub/deeper/d.rst", "text", 2),
    ]
    assert all(item.path.is_absolute() and item.path == item.path.resolve() for item in found)
    assert list(walk([notes])) == found


def test_a_hidden_root_is_walked_when_named(notes: Path):
    assert [item.display for item in walk([notes / ".git"])] == [".git/HEAD.md"]


def test_display_names_do_not_depend_on_how_the_root_was_spelled(
    notes: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(notes / "sub")
    spellings = [[Path(".")], [notes / "sub"], [Path("../sub/")], [Path("deeper/..")]]
    names = [[item.display for item in walk(roots)] for roots in spellings]
    assert names == [["sub/c.html", "sub/deeper/d.rst"]] * 4


def test_roots_with_the_same_name_are_told_apart_by_their_full_path(tmp_path: Path):
    for side in ("left", "right"):
        (tmp_path / side / "notes").mkdir(parents=True)
        (tmp_path / side / "notes" / "x.md").write_text(side)
    roots = [tmp_path / "left" / "notes", tmp_path / "right" / "notes"]
    assert [item.display for item in walk(roots)] == [
        f"{tmp_path}/left/notes/x.md",
        f"{tmp_path}/right/notes/x.md",
    ]


def test_a_file_reached_twice_comes_once(notes: Path):
    (notes / "alias.md").symlink_to(notes / "b.md")
    found = list(walk([notes, notes / "b.md", notes / "sub"]))
    paths = [item.path for item in found]
    assert len(paths) == len(set(paths)) == 4
    # The first name it is reached by in sorted order is the one kept.
    assert [item.display for item in found if item.path.name == "b.md"] == ["notes/alias.md"]


def test_symlinks_out_of_the_folders_named_are_skipped(notes: Path, tmp_path: Path):
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.md").write_text("password\n")
    (notes / "leak.md").symlink_to(outside / "secret.md")
    (notes / "leakdir").symlink_to(outside)
    (notes / "relative.md").symlink_to(Path("..") / "private" / "secret.md")
    found = results([notes])
    assert not any(
        isinstance(item, Candidate) and item.path.is_relative_to(outside) for item in found.values()
    )
    assert reasons([notes]) == {
        "notes/leak.md": f"symlink to {outside.resolve()}/secret.md outside the folders named",
        "notes/leakdir": f"symlink to {outside.resolve()} outside the folders named",
        "notes/relative.md": f"symlink to {outside.resolve()}/secret.md outside the folders named",
    }


def test_a_symlink_into_another_root_is_followed(notes: Path, tmp_path: Path):
    other = tmp_path / "other"
    other.mkdir()
    (other / "shared.md").write_text("shared\n")
    (notes / "link.md").symlink_to(other / "shared.md")
    assert results([notes, other])["notes/link.md"].path == (other / "shared.md").resolve()


def test_symlink_loops_and_broken_links_end_in_skips(notes: Path):
    (notes / "sub" / "deeper" / "up").symlink_to(notes)
    (notes / "sub" / "again").symlink_to(notes / "sub" / "deeper")
    (notes / "dangling.md").symlink_to(notes / "nowhere.md")
    skipped = reasons([notes])
    assert skipped == {
        "notes/dangling.md": f"broken symlink (to {notes}/nowhere.md)",
        "notes/sub/again/up": f"symlink loop: it points back to {notes.resolve()}",
    }
    # sub/again is sub/deeper, walked first by that name (sorted); sub/deeper adds nothing.
    names = [name for name, item in results([notes]).items() if isinstance(item, Candidate)]
    assert names == ["notes/a.txt", "notes/b.md", "notes/sub/again/d.rst", "notes/sub/c.html"]


def test_a_fifo_is_skipped_without_being_opened(notes: Path):
    os.mkfifo(notes / "pipe.txt")  # opening it for reading would block until a writer came
    assert reasons([notes]) == {"notes/pipe.txt": "not a regular file (a fifo)"}


def test_a_device_named_as_a_root_is_skipped(tmp_path: Path):
    (tmp_path / "zero.txt").symlink_to("/dev/zero")
    [skipped] = walk([tmp_path / "zero.txt"])
    assert skipped == Skipped("zero.txt", "not a regular file (a character device)")


def test_a_1_gib_text_file_is_skipped_by_its_size(notes: Path):
    big = notes / "huge.txt"
    big.touch()
    os.truncate(big, 1 << 30)  # sparse: no gigabyte is written, or read
    assert reasons([notes])["notes/huge.txt"] == (
        "too large (1.0 GiB, over the limit of 64.0 MiB a file); split it"
    )
    assert reasons([notes], max_file_bytes=100)["notes/huge.txt"].startswith("too large (1.0 GiB")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("image.txt", png_bytes(), "not a text file (looks like PNG)"),
        ("archive.md", None, "not a text file (looks like zip)"),
        ("program.txt", Path(sys.executable).resolve().read_bytes()[:4096], "looks like ELF"),
        ("latin1.txt", "café au lait".encode("latin-1"), "not UTF-8 text (byte 0xe9 at offset 3)"),
        ("nul.md", b"text\x00with a NUL", "not a text file (binary data: a NUL character at 4)"),
        ("page.html", b"\xff\xd8\xff\xe0\x00\x10JFIF", "not a text file (looks like JPEG)"),
        ("fake.pdf", b"Just some words.\n", "not a PDF (looks like text)"),
        ("image.pdf", png_bytes(), "not a PDF (looks like PNG)"),
        ("random.pdf", bytes(range(256)), "not a PDF (it does not start with %PDF-)"),
        ("empty.md", b"", "empty file"),
        ("data.xyz", b"anything", "unsupported type .xyz (owl reads .md .markdown .txt"),
        ("Makefile", b"all:\n", "unsupported type (no extension) (owl reads .md"),
    ],
)
def test_files_that_are_not_what_their_name_says_are_skipped(
    tmp_path: Path, name: str, content: bytes | None, reason: str
):
    path = tmp_path / name
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("inner.md", "# zipped\n")
    else:
        path.write_bytes(content)
    [skipped] = walk([path])
    assert isinstance(skipped, Skipped)
    assert skipped.path == name
    assert reason in skipped.reason


def test_text_encodings_owl_reads_pass_the_sniff(tmp_path: Path):
    (tmp_path / "utf16.txt").write_text("hello", encoding="utf-16")
    (tmp_path / "bom.md").write_bytes("\ufeff# hi".encode())
    (tmp_path / "cut.txt").write_bytes(("a" + "é" * 5000).encode())  # é across the 8 KiB head
    (tmp_path / "late.pdf").write_bytes(
        b"\n\n%PDF-1.4\n"
    )  # header not at byte 0, as Acrobat allows
    found = results([tmp_path])
    assert all(isinstance(item, Candidate) for item in found.values()), found


def test_a_missing_root_is_an_error_at_once(tmp_path: Path):
    with pytest.raises(DocumentError, match=r"no such file or folder: .*nowhere; check the path"):
        walk([tmp_path / "nowhere"])


def test_limits_must_be_positive():
    with pytest.raises(ConfigError, match="max_file_bytes must be a positive integer"):
        Limits(max_file_bytes=0)


def test_read_bytes_refuses_a_symlink_swapped_in_after_the_walk(notes: Path, tmp_path: Path):
    secret = tmp_path / "secret.md"
    secret.write_text("password\n")
    [first, *_] = walk([notes])
    first.path.unlink()
    first.path.symlink_to(secret)
    with pytest.raises(DocumentError, match="^cannot read it: "):
        read_bytes(first, limits=Limits())


def test_read_bytes_stops_at_the_limit_when_a_file_grew(notes: Path):
    limits = Limits(max_file_bytes=100)
    [first, *_] = walk([notes], limits=limits)
    first.path.write_text("x" * 101)
    with pytest.raises(DocumentError, match="too large .it grew past the limit of 100 B"):
        read_bytes(first, limits=limits)
    first.path.write_text("y" * 100)
    assert read_bytes(first, limits=limits) == b"y" * 100
