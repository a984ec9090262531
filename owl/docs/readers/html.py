"""HTML: the text a reader sees, with headings as Markdown "# " lines for the chunker.

The stdlib parser is lenient with broken markup and runs no scripts; nothing in the page
is fetched (images, frames, styles). Scripts, styles, templates and hidden elements give no
text; block elements end paragraphs; entities are decoded.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from owl.docs.files import Limits
from owl.docs.readers.text import decode
from owl.docs.types import Page
from owl.errors import DocumentError

# Elements whose content is not shown as text. Counted by depth, so nesting is fine.
INVISIBLE = frozenset({"script", "style", "template", "noscript", "title", "svg", "head"})
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param"}
    | {"source", "track", "wbr"}
)
BLOCKS = frozenset(
    {"address", "article", "aside", "blockquote", "body", "caption", "center", "details"}
    | {"dialog", "div", "dl", "fieldset", "figcaption", "figure", "footer", "form", "header"}
    | {"hgroup", "hr", "html", "main", "nav", "ol", "p", "section", "summary", "table"}
    | {"tbody", "tfoot", "thead", "ul"}
)
LINES = frozenset({"br", "dd", "dt", "li", "tr"})
HEADINGS = {f"h{level}": level for level in range(1, 7)}
CELLS = frozenset({"td", "th"})
HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
SPACES = re.compile(r"\s+")


def read(data: bytes, *, limits: Limits) -> list[Page]:
    """One unnumbered Page of the visible text of an HTML file (UTF-8 or UTF-16 with a BOM)."""
    markup = decode(data, limits=limits)
    parser = _TextParser()
    try:
        parser.feed(markup)
        parser.close()
    except Exception as err:  # html.parser is lenient, but a hostile page must not crash owl
        raise DocumentError(f"malformed HTML ({type(err).__name__}: {err})") from None
    return [Page(None, parser.text())]


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._parts: list[str] = []
        self._pending = 0  # newlines owed before the next text: 1 a line, 2 a paragraph
        self._prefix = ""  # "- " or "## ", written before the next text
        self._skip_tag = ""  # the element whose content is being skipped, and its depth
        self._skip_depth = 0
        self._pre = 0
        self._heading = 0
        self._cells = 0  # cells already in this table row

    def text(self) -> str:
        """The text so far: one line per line, a blank line between paragraphs."""
        text = "".join(self._parts)
        text = re.sub(r"[ \t]+\n", "\n", text)
        return re.sub(r"\n{3,}", "\n\n", text).strip()

    def close(self) -> None:
        # A comment, tag or declaration cut off at the end of the file is markup a browser
        # never shows; html.parser would hand it over as text.
        if re.match(r"<[!?/a-zA-Z]", self.rawdata):
            self.rawdata = ""
        super().close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_depth and self._skip_tag == "head" and tag == "body":
            self._skip_depth = 0  # </head> may be left out: <body> ends the head
        if self._skip_depth:
            self._skip_depth += tag == self._skip_tag
            return
        if tag not in VOID and (tag in INVISIBLE or _hidden(attrs)):
            self._skip_tag, self._skip_depth = tag, 1
            return
        if tag in HEADINGS:
            self._break(2)
            self._heading = HEADINGS[tag]
            self._prefix = "#" * self._heading + " "
        elif tag == "pre":
            self._break(2)
            self._pre += 1
        elif tag == "li":
            self._break(1)
            self._prefix = "- "
        elif tag == "tr":
            self._break(1)
            self._cells = 0
        elif tag in CELLS:
            if self._cells:
                self._prefix = " | "
            self._cells += 1
        elif tag == "br" and self._heading:
            self._write(" ")
        elif tag in LINES:
            self._break(1)
        elif tag in BLOCKS:
            self._break(2)

    def handle_endtag(self, tag: str) -> None:
        if self._skip_depth:
            self._skip_depth -= tag == self._skip_tag
            return
        if tag in HEADINGS:
            self._heading = 0
            self._prefix = ""
            self._break(2)
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._break(2)
        elif tag in BLOCKS:
            self._break(2)
        elif tag in LINES:
            self._break(1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre and not self._heading:
            self._write(data.lstrip("\n") if self._pending else data)
            return
        text = SPACES.sub(" ", data)
        at_line_start = self._pending or not self._parts or self._parts[-1].endswith("\n")
        if at_line_start or self._parts[-1].endswith(" ") or self._prefix:
            text = text.lstrip(" ")
        if text:
            self._write(text)

    def _break(self, newlines: int) -> None:
        self._pending = max(self._pending, newlines)
        self._prefix = ""

    def _write(self, text: str) -> None:
        if self._pending and self._parts:
            self._parts[-1] = self._parts[-1].rstrip(" ")
            self._parts.append("\n" * self._pending)
        self._pending = 0
        if self._prefix:
            self._parts.append(self._prefix)
            self._prefix = ""
        self._parts.append(text)


def _hidden(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        if name == "hidden" or (name == "style" and value and HIDDEN_STYLE.search(value)):
            return True
    return False
