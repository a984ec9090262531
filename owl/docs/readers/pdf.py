"""PDF: the text of each page with pypdf, under caps that make a PDF bomb a skip reason.

pypdf (7.x) has its own limits on what a stream may inflate to and how much decoding work it
may cost (pypdf.Configuration); they are set here, from owl's Limits, for the read of one
file only (a context variable, so other threads keep theirs). Page count and total text are
checked here. Any exception pypdf raises on a malformed file becomes a DocumentError.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from owl.docs.files import Limits, too_much_text
from owl.docs.readers.text import normalise_newlines
from owl.docs.types import Page
from owl.errors import DocumentError

log = logging.getLogger(__name__)
# pypdf logs a warning for each flaw it works around in a damaged file. Unconfigured, logging
# would print those to stderr over owl's progress; a handler here keeps them for whoever
# configures logging (they still propagate) and out of the terminal otherwise.
logging.getLogger("pypdf").addHandler(logging.NullHandler())


def read(data: bytes, *, limits: Limits) -> list[Page]:
    """One Page per page of a PDF (numbered from 1), or DocumentError with the skip reason:
    encrypted, malformed, more pages, text or page content than `limits` allow, a stream that
    inflates past `limits.pdf_max_stream_bytes` (a bomb)."""
    try:  # imported here: owl without its docs extra still starts, and reads other files
        import pypdf
        from pypdf.errors import (
            DependencyError,
            FileNotDecryptedError,
            LimitReachedError,
            PdfReadError,
        )
    except ImportError:
        raise DocumentError(
            "reading PDFs needs pypdf, which is not installed: `pip install 'owl[docs]'`"
        ) from None
    with pypdf.apply_configuration(**pypdf_caps(limits)):
        try:
            return _read(pypdf, data, limits=limits)
        except DocumentError:
            raise
        except LimitReachedError as err:
            raise DocumentError(
                f"a PDF bomb, or a PDF too large to read safely (pypdf stopped: {_short(err)})"
            ) from None
        except (FileNotDecryptedError, DependencyError):
            # DependencyError: AES encryption, which pypdf opens only with `cryptography`.
            raise DocumentError(_ENCRYPTED) from None
        except PdfReadError as err:
            raise DocumentError(f"malformed PDF ({_short(err)})") from None
        except MemoryError:
            raise DocumentError("malformed PDF (reading it ran out of memory)") from None
        except Exception as err:  # pypdf on a hostile file can raise nearly anything
            log.debug("pypdf failed on a PDF", exc_info=True)
            raise DocumentError(f"malformed PDF ({type(err).__name__}: {_short(err)})") from None


def pypdf_caps(limits: Limits) -> dict[str, int]:
    """pypdf.Configuration fields for `limits`: every decompressed stream, whatever its filter,
    is held to `pdf_max_stream_bytes`, and its decoding to `pdf_max_decode_work`."""
    stream = limits.pdf_max_stream_bytes
    return {
        "maximum_declared_stream_length": limits.max_file_bytes,
        "array_based_stream_maximum_output_length": stream,
        "zlib_maximum_output_length": stream,
        "lzw_maximum_output_length": stream,
        "run_length_maximum_output_length": stream,
        "brotli_maximum_output_length": stream,
        "jbig2_maximum_output_length": stream,
        "image_maximum_buffer_size": stream,
        "xmp_maximum_input_length": min(stream, 5_000_000),
        "stream_decoding_work_maximum_length": limits.pdf_max_decode_work,
    }


_ENCRYPTED = "encrypted: owl reads no PDF that needs a password; save a copy without the password"


def _read(pypdf: Any, data: bytes, *, limits: Limits) -> list[Page]:
    reader = pypdf.PdfReader(io.BytesIO(data), strict=False)
    # Many "encrypted" PDFs only restrict printing or copying and open with an empty password.
    if reader.is_encrypted and not reader.decrypt(""):
        raise DocumentError(_ENCRYPTED)
    count = len(reader.pages)
    if count > limits.max_pdf_pages:
        raise DocumentError(
            f"too many pages ({count}; owl reads at most {limits.max_pdf_pages} a PDF); split it"
        )
    pages = []
    total = content = 0
    for number, page in enumerate(reader.pages, start=1):
        stream = page.get_contents()
        content += 0 if stream is None else len(stream.get_data())
        if content > limits.pdf_max_content_bytes:
            raise DocumentError(
                f"a PDF bomb, or too dense to read: its pages' content passes "
                f"{limits.pdf_max_content_bytes:,} bytes by page {number}; split it"
            )
        text = normalise_newlines(page.extract_text() or "")
        total += len(text)
        if total > limits.max_chars:
            raise DocumentError(too_much_text(limits))
        pages.append(Page(number, text))
    return pages


def _short(err: Exception) -> str:
    """pypdf's message, cut to a line: some quote kilobytes of the file's raw bytes."""
    text = " ".join(str(err).split())
    return text if len(text) <= 160 else text[:157] + "..."
