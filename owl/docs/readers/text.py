"""Plain text, Markdown and reStructuredText: the decoded file, as one page."""

from __future__ import annotations

from owl.docs.files import Limits, too_much_text
from owl.docs.sniff import decode_text
from owl.docs.types import Page
from owl.errors import DocumentError


def read(data: bytes, *, limits: Limits) -> list[Page]:
    """One unnumbered Page of `data` decoded (UTF-8, or UTF-16/32 with a BOM), newlines as \\n.

    Raises DocumentError when it is not text (invalid bytes, NUL) or holds too much of it.
    """
    return [Page(None, decode(data, limits=limits))]


def decode(data: bytes, *, limits: Limits) -> str:
    """The text of a whole file, with the checks every text kind shares."""
    text = normalise_newlines(decode_text(data))
    if len(text) > limits.max_chars:
        raise DocumentError(too_much_text(limits))
    return text


def normalise_newlines(text: str) -> str:
    """`text` with Windows (\\r\\n) and old Mac (\\r) line ends as \\n, so that a blank line
    between paragraphs looks the same whatever wrote the file."""
    return text.replace("\r\n", "\n").replace("\r", "\n")
