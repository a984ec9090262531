"""Pages into chunks that follow the text's structure: sections, paragraphs, sentences.

A page is cut at Markdown headings into sections, and a section into paragraphs at blank
lines (a fenced code block is one paragraph, and a "#" inside it is no heading). Paragraphs
are packed into chunks of at most `size` characters; a paragraph longer than that is cut at
sentence ends (and line ends), a sentence longer than that at spaces, a word longer than that
anywhere. Each chunk after the first of a section starts with the tail of the one before it
(at most `overlap` characters, from the start of a word), so a sentence cut in two is whole
in one of them. A chunk is an exact span of its page: `page.text[start:end] == chunk.text`,
it starts and ends with a non-space, and no text of the page is left out of every chunk.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from owl.docs.types import Chunk, Page
from owl.errors import ConfigError

HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(?P<title>.*?)(?:[ \t]+#+)?[ \t]*")
FENCE = re.compile(r" {0,3}(```|~~~)")
# A sentence ends at . ! ? (and their CJK forms), closing quotes or brackets after them, then
# a space; a line end inside a paragraph (a list, a poem, code) is a place to cut, too.
SENTENCE_END = re.compile(r"""[.!?…。！？]+["'”’)\]]*(?=\s)|(?=\n)""")
LAST_SPACE = re.compile(r".*\s", re.DOTALL)  # greedy: up to the last space in its window
WORD_START = re.compile(r"(?<!\S)\S")


@dataclass(frozen=True)
class _Unit:
    """A span of page text that no chunk boundary falls inside, unless it is too long."""

    start: int
    end: int
    heading: str | None = None  # set on a heading line: the section it opens


def chunk_pages(pages: Sequence[Page], *, size: int = 1000, overlap: int = 150) -> list[Chunk]:
    """The chunks of `pages` in reading order, at most `size` characters each, with up to
    `overlap` characters of the previous chunk of the same section at their start; each
    records its page, its span in that page's text and the nearest heading above it (a
    heading carries on to the next pages until another one)."""
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"chunk size must be a whole number of characters ≥ 1, not {size!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < size:
        raise ConfigError(
            f"chunk overlap must be at least 0 and less than the chunk size ({size}), "
            f"not {overlap!r}"
        )
    chunks: list[Chunk] = []
    heading = ""
    for page in pages:
        for units in _sections(page.text):
            headings = [unit for unit in units if unit.heading is not None]
            starts = [unit.start for unit in headings]
            for start, end in _pack(page.text, units, size=size, overlap=overlap):
                # The last heading line that starts in the chunk or above it, in its section.
                above = bisect.bisect_left(starts, end)
                named = headings[above - 1].heading if above else heading
                chunks.append(Chunk(page.text[start:end], page.number, start, end, named or ""))
            if headings:
                heading = headings[-1].heading or ""
    return chunks


def _sections(text: str) -> Iterator[list[_Unit]]:
    """The units of each section of a page: a heading line and what is under it.

    A heading with nothing under it before the next heading (a title over a subtitle) joins
    the next section, so that it is not a chunk of its own.
    """
    units: list[_Unit] = []
    has_body = False
    for block in _blocks(text):
        if block.heading is not None and has_body:
            yield units
            units, has_body = [], False
        has_body = has_body or block.heading is None
        units.append(block)
    if units:
        yield units


def _blocks(text: str) -> Iterator[_Unit]:
    """Heading lines and paragraphs (runs of non-blank lines; a code fence holds its blank
    lines), as spans without their surrounding whitespace."""
    start = end = -1  # the paragraph being read
    fenced = False
    pos = 0
    while pos < len(text):
        newline = text.find("\n", pos)
        line_end = len(text) if newline < 0 else newline
        line = text[pos:line_end]
        heading = None if fenced else HEADING.fullmatch(line)
        if heading is not None and heading["title"].strip():
            if start >= 0:
                yield _trimmed(text, start, end)
            start = -1
            span = _trimmed(text, pos, line_end)
            yield _Unit(span.start, span.end, heading["title"].strip())
        elif line.strip() or fenced:
            if FENCE.match(line):
                fenced = not fenced
            if start < 0:
                start = pos
            end = line_end
        elif start >= 0:
            yield _trimmed(text, start, end)
            start = -1
        pos = line_end + 1
    if start >= 0:
        yield _trimmed(text, start, end)


def _pack(text: str, units: list[_Unit], *, size: int, overlap: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each chunk of one section's units."""
    pieces = [piece for unit in units for piece in _fit(text, unit, size, overlap)]
    previous: tuple[int, int] | None = None
    index = 0
    while index < len(pieces):
        first = pieces[index]
        start = first.start
        if previous is not None and overlap:
            lowest = max(previous[1] - overlap, first.end - size)
            tail = _overlap_start(text, previous, lowest=lowest)
            start = first.start if tail is None else tail
        end = first.end
        index += 1
        while index < len(pieces) and pieces[index].end - start <= size:
            end = pieces[index].end
            index += 1
        previous = (start, end)
        yield previous


def _fit(text: str, unit: _Unit, size: int, overlap: int) -> Iterator[_Unit]:
    """`unit` cut into pieces of at most `size`: at sentence ends, then spaces, then anywhere.

    A sentence cut at spaces is cut into windows of `size - overlap`, so that each still has
    room for the overlap in front of it.
    """
    if unit.end - unit.start <= size:
        yield unit
        return
    for sentence in _split(text, unit, SENTENCE_END):
        if sentence.end - sentence.start <= size:
            yield sentence
        else:
            yield from _windows(text, sentence, size - overlap)


def _windows(text: str, span: _Unit, width: int) -> Iterator[_Unit]:
    """`span` in pieces of at most `width`, each ending before a space where there is one."""
    pos = span.start
    while pos < span.end:
        if span.end - pos <= width:
            yield _trimmed(text, pos, span.end)
            return
        space = LAST_SPACE.match(text, pos, pos + width + 1)
        cut = space.end() - 1 if space is not None and space.end() - 1 > pos else pos + width
        piece = _trimmed(text, pos, cut)
        if piece.end > piece.start:
            yield piece
        pos = _trimmed(text, cut, span.end).start


def _split(text: str, unit: _Unit, boundary: re.Pattern[str]) -> Iterator[_Unit]:
    """The trimmed, non-empty spans of `unit` between matches of `boundary`."""
    start = unit.start
    for match in boundary.finditer(text, unit.start, unit.end):
        if match.end() > start:
            piece = _trimmed(text, start, match.end())
            if piece.end > piece.start:
                yield piece
            start = match.end()
    piece = _trimmed(text, start, unit.end)
    if piece.end > piece.start:
        yield piece


def _overlap_start(text: str, previous: tuple[int, int], *, lowest: int) -> int | None:
    """The first word start in the previous chunk at or after `lowest` (its own start
    excluded, so that every chunk moves on), or None when there is none."""
    prev_start, prev_end = previous
    match = WORD_START.search(text, max(lowest, prev_start + 1), prev_end)
    return None if match is None else match.start()


def _trimmed(text: str, start: int, end: int) -> _Unit:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return _Unit(start, end)
