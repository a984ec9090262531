"""Text to clauses, each with the punctuation mark that ends it, the way espeak-ng splits it.

Piper voices were trained on espeak-ng's phonemes with the clause's punctuation kept as a
phoneme (`,` `.` `?` `!` `:` `;`), one sentence per synthesis. The espeak-ng program prints
a clause's phonemes but not its punctuation, so owl splits the text itself, following the
program's rules as observed: a run of marks ends a clause only when whitespace (or the end)
follows, a lone `.` before a lowercase word does not (abbreviations: "Dr. smith", "e.g. this"),
an ellipsis or a spaced dash pauses without a mark, and a blank line ends a sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Marks espeak-ng treats as clause ends; the first of a run is the one kept ("?!" -> "?").
SENTENCE_MARKS = ".!?"
CLAUSE_MARKS = ",;:"
# A clause longer than this many words is cut at a word: espeak-ng cuts long clauses itself
# (at about 150 words), and owl's cut keeps its count of clauses in step with the program's.
MAX_CLAUSE_WORDS = 100

_BREAK = re.compile(
    r"(?P<marks>[.!?,;:…]+)[\"'”’»)\]]*(?=\s|$)"  # marks, closing quotes/brackets, then a space
    r"|(?P<dash>\s+[—–]\s+)"
    r"|(?P<paragraph>\n[^\S\n]*\n\s*)"
)
_NEXT_WORD = re.compile(r"\s*(\S)")


@dataclass(frozen=True)
class Clause:
    """A clause's text for espeak-ng (its marks kept: "Dr." reads as "doctor"), the mark
    that Piper speaks after it ('' for none), and whether a sentence ends with it."""

    text: str
    mark: str
    ends_sentence: bool


def split_clauses(text: str) -> list[Clause]:
    """The text's clauses in order; clauses with no letter or digit are left out."""
    clauses: list[Clause] = []
    start = 0
    for match in _BREAK.finditer(text):
        if match["marks"] and _is_abbreviation(match["marks"], text, match.end()):
            continue
        if match["marks"]:
            piece, mark, ends = text[start : match.end()], *_meaning(match["marks"])
        else:
            piece, mark, ends = text[start : match.start()], "", bool(match["paragraph"])
        clauses.extend(_cut(piece, mark, ends))
        start = match.end()
    clauses.extend(_cut(text[start:], "", True))
    return clauses


def _is_abbreviation(marks: str, text: str, end: int) -> bool:
    following = _NEXT_WORD.match(text, end)
    return marks == "." and following is not None and following[1].islower()


def _meaning(marks: str) -> tuple[str, bool]:
    # Piper keeps no mark for an ellipsis: a pause inside the sentence.
    if marks.startswith("…") or marks.startswith(".."):
        return "", False
    first = marks[0]
    return first, first in SENTENCE_MARKS


def _cut(piece: str, mark: str, ends_sentence: bool) -> list[Clause]:
    words = piece.split()
    if not any(ch.isalnum() for ch in piece):
        # Nothing to pronounce; a sentence end still ends the sentence before it.
        return [Clause("", "", True)] if ends_sentence else []
    parts = [
        " ".join(words[index : index + MAX_CLAUSE_WORDS])
        for index in range(0, len(words), MAX_CLAUSE_WORDS)
    ]
    last = len(parts) - 1
    return [
        Clause(part, mark if index == last else "", ends_sentence and index == last)
        for index, part in enumerate(parts)
    ]
