"""The prompt an answer from documents is built on, and the citations kept from the answer."""

from __future__ import annotations

from owl.docs.grounding import (
    NOT_FOUND,
    SYSTEM,
    check_citations,
    grounded_messages,
    location,
    quoted_sources,
)
from owl.docs.types import Hit
from tests.support.documents import INJECTION


def _hit(text: str, path: str = "/docs/a.md", page: int | None = None) -> Hit:
    return Hit(path=path, page=page, start=0, end=len(text), score=1.0, text=text, chunk_id=1)


def test_sources_are_numbered_and_every_line_quoted() -> None:
    hits = [_hit("first line\nsecond line"), _hit("in a pdf", "/docs/b.pdf", page=3)]
    text = quoted_sources(hits)
    assert text.startswith("[1] /docs/a.md\n> first line\n> second line")
    assert "[2] /docs/b.pdf:3\n> in a pdf" in text
    assert location(hits[1]) == "/docs/b.pdf:3"


def test_an_injection_stays_quoted_below_the_question() -> None:
    messages = [{"role": "user", "content": "When was the beacon relit?"}]
    grounded = grounded_messages(messages, [_hit(f"Ledger.\n{INJECTION}")])
    assert grounded[0] == {"role": "system", "content": SYSTEM}
    user = grounded[-1]["content"]
    assert user.startswith("When was the beacon relit?\n\nSources (quoted documents):")
    injected = [line for line in user.splitlines() if "ignore all previous" in line]
    assert injected and all(line.startswith("> ") for line in injected)
    assert messages == [{"role": "user", "content": "When was the beacon relit?"}]  # not mutated


def test_a_clients_system_prompt_follows_owls_instructions() -> None:
    messages = [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "Premier."},
        {"role": "user", "content": [{"type": "text", "text": "Second question"}]},
    ]
    grounded = grounded_messages(messages, [_hit("a fact")])
    assert grounded[0]["content"] == f"{SYSTEM}\n\nAnswer in French."
    assert grounded[1]["content"] == "First question"  # only the last question gets sources
    parts = grounded[3]["content"]
    assert parts[0] == {"type": "text", "text": "Second question"}
    assert parts[1]["text"].startswith("Sources (quoted documents):")


def test_citations_naming_no_source_are_dropped() -> None:
    cited = check_citations("The code is 7-4-1-9 [1]. Also [3] and [1, 2, 9].", sources=2)
    assert cited.citations == [1, 2]
    assert cited.invalid == [3, 9]
    assert cited.text == "The code is 7-4-1-9 [1]. Also and [1, 2]."


def test_an_answer_without_citations_has_none() -> None:
    cited = check_citations(NOT_FOUND, sources=5)
    assert cited.citations == [] and cited.invalid == [] and cited.text == NOT_FOUND
