"""Readers on real files: Markdown, HTML, PDFs written by reportlab and by hand (a bomb), and
a reader plugin installed through a real entry point."""

from __future__ import annotations

import textwrap
import tracemalloc
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.pdfgen import canvas

from owl.docs.chunking import chunk_pages
from owl.docs.files import DEFAULT_LIMITS, Candidate, Limits, walk
from owl.docs.readers import html, read
from owl.docs.readers import pdf as pdf_reader
from owl.docs.types import Page, Skipped
from owl.errors import DocumentError

MiB = 1024 * 1024


def candidate(path: Path, *, limits: Limits = DEFAULT_LIMITS) -> Candidate:
    """The walk's verdict on one file, which must be a Candidate."""
    [found] = walk([path], limits=limits)
    assert isinstance(found, Candidate), found
    return found


def reportlab_pdf(path: Path, pages: list[str], *, encrypt: StandardEncryption | None = None):
    """A real PDF, one line of text per page."""
    drawing = canvas.Canvas(str(path), encrypt=encrypt)
    for line in pages:
        if line:
            drawing.drawString(72, 720, line)
        else:
            drawing.rect(72, 600, 200, 100, fill=1)  # a page with a picture and no text
        drawing.showPage()
    drawing.save()
    return path


def handmade_pdf(content: bytes, *, filters: str = "/FlateDecode") -> bytes:
    """A one-page PDF whose content stream is `content` as it is stored (already encoded)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d /Filter %s >>\nstream\n" % (len(content), filters.encode())
        + content
        + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


def zeros_deflated(total: int, *, segment: int = 16 * MiB) -> bytes:
    """A valid zlib stream that inflates to `total` zero bytes, built in a blink: with a full
    flush each segment of zeros compresses to the same bytes, so one is repeated; the
    Adler-32 of n zeros is (n mod 65521) << 16 | 1."""
    compressor = zlib.compressobj(9)
    zeros = bytes(segment)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeat = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    final_block = compressor.flush(zlib.Z_FINISH)[:-4]
    count = total // segment
    adler = ((count * segment) % 65521) << 16 | 1
    return first + repeat * (count - 1) + final_block + adler.to_bytes(4, "big")


# --- text and Markdown -----------------------------------------------------------------------


def test_markdown_is_one_page_of_its_text_with_unix_newlines(tmp_path: Path):
    path = tmp_path / "notes.md"
    path.write_bytes("# Owls\r\n\r\nThey hunt at night.\r\nCafé ☕\r\n".encode())
    assert read(candidate(path)) == [Page(None, "# Owls\n\nThey hunt at night.\nCafé ☕\n")]


def test_utf16_with_bom_is_read(tmp_path: Path):
    path = tmp_path / "windows.txt"
    path.write_text("Notepad wrote this: ünïcode\n", encoding="utf-16")
    assert read(candidate(path)) == [Page(None, "Notepad wrote this: ünïcode\n")]


def test_invalid_utf8_after_the_sniffed_head_is_a_skip_reason(tmp_path: Path):
    path = tmp_path / "late.txt"
    path.write_bytes(b"fine text\n" * 2000 + b"caf\xe9\n")  # the bad byte is past 8 KiB
    with pytest.raises(DocumentError, match=r"not UTF-8 text \(byte 0xe9 at offset 20003\)"):
        read(candidate(path))


def test_text_over_max_chars_is_skipped(tmp_path: Path):
    path = tmp_path / "long.md"
    path.write_text("word " * 100)
    with pytest.raises(DocumentError, match="too much text"):
        read(candidate(path), limits=Limits(max_chars=200))


def test_whitespace_only_file_has_no_text(tmp_path: Path):
    path = tmp_path / "blank.txt"
    path.write_text("  \n\n\t\n")
    with pytest.raises(DocumentError, match="no text in it"):
        read(candidate(path))


# --- HTML ------------------------------------------------------------------------------------

PAGE_HTML = """\
<!doctype html>
<html><head><title>Not shown</title><style>body { color: red }</style>
<script>var secret = "<p>not text</p>";</script></head>
<body>
  <nav><a href="/">Home</a></nav>
  <h1>Owls &amp; <em>their</em> prey</h1>
  <p>Owls hunt
     at   night.<br>Mice&nbsp;beware &lt;3</p>
  <div hidden>hidden text</div>
  <p style="display: none">also hidden</p>
  <h2>Diet</h2>
  <ul><li>mice</li><li>voles</li></ul>
  <table><tr><th>Owl</th><th>Weight</th></tr><tr><td>Barn</td><td>0.5 kg</td></tr></table>
  <pre>keep
  this   spacing</pre>
  <template><p>a template</p></template>
  <noscript>enable js</noscript>
</body></html>
"""


def test_html_gives_visible_text_with_markdown_headings(tmp_path: Path):
    path = tmp_path / "owls.html"
    path.write_text(PAGE_HTML)
    [page] = read(candidate(path))
    assert page.number is None
    assert page.text == textwrap.dedent(
        """\
        Home

        # Owls & their prey

        Owls hunt at night.
        Mice beware <3

        ## Diet

        - mice
        - voles

        Owl | Weight
        Barn | 0.5 kg

        keep
          this   spacing"""
    )


def test_html_headings_open_sections_for_the_chunker(tmp_path: Path):
    path = tmp_path / "owls.htm"
    path.write_text(PAGE_HTML)
    chunks = chunk_pages(read(candidate(path)), size=60, overlap=0)
    assert {chunk.heading for chunk in chunks} == {"", "Owls & their prey", "Diet"}
    assert [c.heading for c in chunks if "voles" in c.text] == ["Diet"]


def test_html_without_a_closing_head_still_gives_its_body(tmp_path: Path):
    path = tmp_path / "old.html"
    path.write_text("<html><head><title>t</title><body><p>Body text</p>")
    assert read(candidate(path)) == [Page(None, "Body text")]


def test_html_that_is_all_script_has_no_text(tmp_path: Path):
    path = tmp_path / "app.html"
    path.write_text("<html><body><script>render()</script></body></html>")
    with pytest.raises(DocumentError, match="no text in it"):
        read(candidate(path))


MARKUP = st.sampled_from(
    ["<p>", "</p>", "<h2>", "</h2>", "<script>", "</script>", "<pre>", "</pre>", "<li>", "<td>"]
    + ["<br/>", "<div hidden>", "</div>", "<!--", "-->", "<![CDATA[", "]]>", "&amp;", "&#x110000;"]
    + ["<", ">", "&", '"', "=", "<!", "<?", " ", "\n", "word", "é", "<head>", "<body>"]
)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(MARKUP, max_size=60))
def test_any_markup_gives_text_or_a_document_error(parts: list[str]):
    try:
        pages = html.read("".join(parts).encode(), limits=Limits())
    except DocumentError as err:
        assert str(err)
    else:
        [page] = pages
        assert "<script>" not in page.text and page.text == page.text.strip()


# --- PDF -------------------------------------------------------------------------------------


def test_pdf_gives_one_numbered_page_per_page(tmp_path: Path):
    path = reportlab_pdf(tmp_path / "report.pdf", ["Owls hunt", "Mice hide", "Voles run"])
    pages = read(candidate(path))
    assert [page.number for page in pages] == [1, 2, 3]
    assert [page.text.strip() for page in pages] == ["Owls hunt", "Mice hide", "Voles run"]
    chunks = chunk_pages(pages)
    assert [(chunk.page, chunk.text) for chunk in chunks] == [
        (1, "Owls hunt"),
        (2, "Mice hide"),
        (3, "Voles run"),
    ]


def test_pdf_with_more_pages_than_the_limit_is_skipped(tmp_path: Path):
    path = reportlab_pdf(tmp_path / "long.pdf", ["one", "two", "three"])
    with pytest.raises(DocumentError, match=r"too many pages \(3; owl reads at most 2"):
        read(candidate(path), limits=Limits(max_pdf_pages=2))


def test_pdf_with_more_text_than_the_limit_is_skipped(tmp_path: Path):
    path = reportlab_pdf(tmp_path / "wordy.pdf", ["a" * 80, "b" * 80])
    with pytest.raises(DocumentError, match="too much text"):
        read(candidate(path), limits=Limits(max_chars=100))


def test_pdf_without_text_says_so(tmp_path: Path):
    path = reportlab_pdf(tmp_path / "scan.pdf", [""])
    with pytest.raises(DocumentError, match="no text in it .a scanned PDF"):
        read(candidate(path))


def test_pdf_with_a_user_password_is_skipped_as_encrypted(tmp_path: Path):
    locked = StandardEncryption("secret", ownerPassword="owner", strength=128)
    path = reportlab_pdf(tmp_path / "locked.pdf", ["classified"], encrypt=locked)
    with pytest.raises(DocumentError, match="^encrypted: owl reads no PDF that needs a password"):
        read(candidate(path))


def test_pdf_encrypted_with_an_empty_user_password_is_read(tmp_path: Path):
    no_copying = StandardEncryption("", ownerPassword="owner", canCopy=0, strength=128)
    path = reportlab_pdf(tmp_path / "restricted.pdf", ["open to read"], encrypt=no_copying)
    assert [page.text.strip() for page in read(candidate(path))] == ["open to read"]


def test_handmade_pdf_reads(tmp_path: Path):
    path = tmp_path / "hand.pdf"
    path.write_bytes(handmade_pdf(zlib.compress(b"BT /F1 12 Tf 72 720 Td (Hand made) Tj ET")))
    assert read(candidate(path)) == [Page(1, "Hand made")]


def test_pdf_bomb_is_skipped_with_a_reason_in_bounded_memory(tmp_path: Path):
    bomb = zeros_deflated(4 * 1024 * MiB)  # 4 GiB of zeros in about 4 MB
    path = tmp_path / "bomb.pdf"
    path.write_bytes(handmade_pdf(bomb))
    assert path.stat().st_size < 5 * MiB
    limits = Limits(pdf_max_stream_bytes=8 * MiB)
    found = candidate(path, limits=limits)
    tracemalloc.start()
    try:
        with pytest.raises(DocumentError, match="PDF bomb"):
            read(found, limits=limits)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Inflated, the stream is 4 GiB. zlib holds the capped output twice (its block buffer,
    # then the joined bytes); the ~4 MB file is held by owl, by pypdf's stream object, as
    # the stream's data and as zlib's unconsumed tail: 2 x 8 MiB + 4 x 4 MB, and some slack.
    size = path.stat().st_size
    assert peak < 2 * limits.pdf_max_stream_bytes + 5 * size, f"peak {peak / MiB:.0f} MiB"


def test_pdf_whose_pages_hold_too_much_content_is_skipped(tmp_path: Path):
    path = tmp_path / "dense.pdf"
    dense = b"BT /F1 12 Tf 72 720 Td (Hi) Tj ET\n" * 100  # 3,400 bytes of operators
    path.write_bytes(handmade_pdf(zlib.compress(dense)))
    assert read(candidate(path), limits=Limits(pdf_max_content_bytes=len(dense)))
    with pytest.raises(DocumentError, match="too dense to read: .* passes 3,399 bytes by page 1"):
        read(candidate(path), limits=Limits(pdf_max_content_bytes=len(dense) - 1))


def test_pdf_caps_reach_pypdf_for_the_read_only(tmp_path: Path):
    import pypdf

    before = pypdf.get_configuration()
    path = tmp_path / "hand.pdf"
    path.write_bytes(handmade_pdf(zlib.compress(b"BT /F1 12 Tf 72 720 Td (Hi) Tj ET")))
    limits = Limits(pdf_max_stream_bytes=4)  # the 37-byte stream inflates past 4 bytes
    with pytest.raises(DocumentError, match="PDF bomb"):
        read(candidate(path, limits=limits), limits=limits)
    assert pypdf.get_configuration() == before
    assert pdf_reader.pypdf_caps(limits)["zlib_maximum_output_length"] == 4


@pytest.mark.parametrize(
    "data",
    [
        b"%PDF-1.7\nthis is no pdf at all\n",
        b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R >>\nendobj\n"
        b"trailer\n<< /Root 1 0 R >>\n",
    ],
)
def test_malformed_pdf_is_a_document_error(tmp_path: Path, data: bytes):
    path = tmp_path / "broken.pdf"
    path.write_bytes(data)
    with pytest.raises(DocumentError):
        read(candidate(path))


@pytest.fixture(scope="module")
def real_pdf_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    folder = tmp_path_factory.mktemp("pdf")
    return reportlab_pdf(folder / "seed.pdf", ["Owls hunt", "Mice hide"]).read_bytes()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=8)), max_size=6)
)
def test_corrupted_pdf_raises_nothing_but_document_error(
    tmp_path: Path, real_pdf_bytes: bytes, edits: list[tuple[int, bytes]]
):
    data = bytearray(real_pdf_bytes)
    for at, junk in edits:
        at %= len(data)
        data[at : at + len(junk)] = junk
    path = tmp_path / "fuzzed.pdf"
    path.write_bytes(bytes(data))
    found = next(iter(walk([path])))
    if isinstance(found, Skipped):
        return  # the header itself was hit
    try:
        pages = read(found)
    except DocumentError as err:
        assert str(err)
    else:
        assert all(isinstance(page.text, str) for page in pages)
