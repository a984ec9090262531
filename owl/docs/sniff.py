"""What a file's first bytes say it is: a PDF, text in an encoding owl reads, or something else.

A file's name is a claim; its bytes are the evidence. The walker reads only a file's head here,
so a misnamed binary is skipped before any reader sees it; the text readers decode the whole
file with the same rules.
"""

from __future__ import annotations

import codecs

from owl.errors import DocumentError

HEAD_BYTES = 8192  # enough for every signature below and a fair sample of the text
PDF_HEADER_WINDOW = 1024  # readers (Acrobat's too) find %PDF- within the first KiB

# Signatures of formats that turn up in document folders under the wrong name. They only
# name what a file looks like once it failed to be text: "MZ" or "ID3" can start real text.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF-", "PDF"),
    (b"PK\x03\x04", "zip"),
    (b"PK\x05\x06", "zip"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"\x28\xb5\x2f\xfd", "zstd"),
    (b"7z\xbc\xaf\x27\x1c", "7z"),
    (b"\x7fELF", "ELF"),
    (b"MZ", "a Windows executable"),
    (b"\xcf\xfa\xed\xfe", "Mach-O"),
    (b"\xca\xfe\xba\xbe", "Mach-O or Java class"),
    (b"\x00asm", "WebAssembly"),
    (b"SQLite format 3\x00", "SQLite"),
    (b"GGUF", "GGUF"),
    (b"RIFF", "RIFF (WAV, AVI or WebP)"),
    (b"OggS", "Ogg"),
    (b"ID3", "MP3"),
    (b"fLaC", "FLAC"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office document (OLE)"),
)

# Checked longest first: a UTF-32-LE BOM starts with the UTF-16-LE one.
BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)

CONVERT_HINT = "owl reads UTF-8, or UTF-16 with a BOM: convert it (iconv -t UTF-8)"


def looks_like(head: bytes) -> str | None:
    """The format whose signature `head` starts with, or None."""
    for magic, name in SIGNATURES:
        if head.startswith(magic):
            return name
    return None


def text_encoding(head: bytes) -> str:
    """The codec that decodes a text file starting with `head`: its BOM's, else UTF-8."""
    for bom, codec in BOMS:
        if head.startswith(bom):
            return codec
    return "utf-8"


def decode_text(data: bytes, *, final: bool = True) -> str:
    """`data` decoded as text owl reads, or DocumentError saying why it is not such text.

    `final=False` decodes a head cut from a longer file, whose last character may be cut too.
    """
    codec = text_encoding(data)
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    try:
        text = decoder.decode(data, final=final)
    except UnicodeDecodeError as err:
        raise DocumentError(_not_text(data, err)) from None
    nul = text.find("\x00")
    if nul >= 0:
        kind = looks_like(data)
        what = f"looks like {kind}" if kind else f"binary data: a NUL character at {nul}"
        raise DocumentError(f"not a text file ({what})")
    return text


def check_text_head(head: bytes, *, whole: bool) -> None:
    """Raise DocumentError unless `head` (the whole file when `whole`) starts a text file."""
    decode_text(head, final=whole)


def check_pdf_head(head: bytes) -> None:
    """Raise DocumentError unless `head` starts a PDF (%PDF- within its first KiB)."""
    if b"%PDF-" in head[:PDF_HEADER_WINDOW]:
        return
    kind = looks_like(head)
    if kind is None:
        try:
            decode_text(head, final=False)
            kind = "text"
        except DocumentError:
            kind = None
    what = f"looks like {kind}" if kind else "it does not start with %PDF-"
    raise DocumentError(f"not a PDF ({what})")


def _not_text(data: bytes, err: UnicodeDecodeError) -> str:
    kind = looks_like(data)
    if kind is not None:
        return f"not a text file (looks like {kind})"
    if b"\x00" in data[:HEAD_BYTES]:
        return "not a text file (binary data: NUL bytes)"
    bad = data[err.start : err.start + 1].hex()
    return f"not {err.encoding.upper()} text (byte 0x{bad} at offset {err.start}); {CONVERT_HINT}"
