"""Documents into pages of text: a built-in reader for each kind, plugins for more.

Every failure a file can cause is a DocumentError whose message is the reason it is skipped;
nothing a document holds can raise anything else out of `read`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from owl.docs.files import DEFAULT_LIMITS, Candidate, Limits, read_bytes, too_much_text
from owl.docs.plugins import load_reader, plugin_readers
from owl.docs.readers import html, pdf, text
from owl.docs.types import Page
from owl.errors import DocumentError

BUILTIN: Mapping[str, Callable[..., list[Page]]] = {
    "text": text.read,
    "markdown": text.read,
    "html": html.read,
    "pdf": pdf.read,
}

NO_TEXT: Mapping[str, str] = {
    "pdf": "no text in it (a scanned PDF? owl does not read the text in images)",
}


def read(candidate: Candidate, *, limits: Limits = DEFAULT_LIMITS) -> list[Page]:
    """The pages of a candidate from `owl.docs.files.walk`, or DocumentError with the reason
    to skip it (not what its name says, malformed, encrypted, too much text, no text)."""
    reader = BUILTIN.get(candidate.kind)
    if reader is not None:
        pages = reader(read_bytes(candidate, limits=limits), limits=limits)
    else:
        pages = _read_with_plugin(candidate)
    total = sum(len(page.text) for page in pages)
    if total > limits.max_chars:
        raise DocumentError(too_much_text(limits))
    if not any(page.text.strip() for page in pages):
        raise DocumentError(NO_TEXT.get(candidate.kind, "no text in it"))
    return pages


def _read_with_plugin(candidate: Candidate) -> list[Page]:
    point = plugin_readers().get(candidate.kind)
    if point is None:
        raise DocumentError(
            f"no reader for .{candidate.kind} any more (was its plugin uninstalled?)"
        )
    reader = load_reader(point)
    try:
        result = reader(candidate.path)
    except Exception as err:  # a plugin can fail in any way; the file is skipped, owl goes on
        raise DocumentError(
            f"the .{candidate.kind} reader ({point.value}) failed: {type(err).__name__}: {err}"
        ) from None
    if isinstance(result, str):
        return [Page(None, text.normalise_newlines(result))]
    if isinstance(result, list) and all(_is_page(page) for page in result):
        return [Page(page.number, text.normalise_newlines(page.text)) for page in result]
    raise DocumentError(
        f"the .{candidate.kind} reader ({point.value}) returned {type(result).__name__}, "
        "not a str or a list of owl.docs.types.Page; fix the plugin"
    )


def _is_page(page: object) -> bool:
    return (
        isinstance(page, Page)
        and isinstance(page.text, str)
        and (page.number is None or (isinstance(page.number, int) and page.number >= 1))
    )
