"""What documents become: pages of text, chunks with their spans, and retrieval hits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Page:
    """The text of one page (1-based `number` in a PDF; None for a file without pages)."""

    number: int | None
    text: str


@dataclass(frozen=True)
class Chunk:
    """A piece of a page: `page.text[start:end] == text`; `heading` is the section it is in."""

    text: str
    page: int | None
    start: int
    end: int
    heading: str = ""


@dataclass(frozen=True)
class Skipped:
    """A file that was not read, and why (a reason a person can act on)."""

    path: str
    reason: str


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: where it is, how well it matched, and its text."""

    path: str
    page: int | None
    start: int
    end: int
    score: float
    text: str
    chunk_id: int
