"""Chunking: structure kept (headings, paragraphs, sentences), exact spans, bounded overlap."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from owl.docs.chunking import chunk_pages
from owl.docs.types import Chunk, Page
from owl.errors import ConfigError


def texts(text: str, *, size: int, overlap: int = 0) -> list[str]:
    return [chunk.text for chunk in chunk_pages([Page(None, text)], size=size, overlap=overlap)]


def test_short_paragraphs_are_packed_into_one_chunk():
    text = "First paragraph.\n\nSecond one.\n\n\nThird."
    [chunk] = chunk_pages([Page(None, text)], size=100, overlap=0)
    assert chunk == Chunk(text, None, 0, len(text), "")


def test_chunks_end_at_paragraph_ends_when_the_next_does_not_fit():
    text = "Alpha beta gamma.\n\nDelta epsilon.\n\nZeta eta theta iota."
    assert texts(text, size=35) == ["Alpha beta gamma.\n\nDelta epsilon.", "Zeta eta theta iota."]


def test_headings_open_sections_and_name_their_chunks():
    text = (
        "Preface text.\n\n# Owls\n\nOwls hunt at night.\n\n## Barn owls ##\n"
        "Barn owls screech.\n\n#hashtag is no heading\n\n####### nor is this"
    )
    chunks = chunk_pages([Page(None, text)], size=100, overlap=0)
    assert [(chunk.heading, chunk.text) for chunk in chunks] == [
        ("", "Preface text."),
        ("Owls", "# Owls\n\nOwls hunt at night."),
        (
            "Barn owls",
            "## Barn owls ##\nBarn owls screech.\n\n#hashtag is no heading\n\n####### nor is this",
        ),
    ]


def test_a_heading_with_nothing_under_it_joins_the_next_section():
    text = "# Field guide\n\n## Owls\n\nThey hunt.\n\n# Empty at the end"
    chunks = chunk_pages([Page(None, text)], size=1000)
    assert [(chunk.heading, chunk.text) for chunk in chunks] == [
        ("Owls", "# Field guide\n\n## Owls\n\nThey hunt."),
        ("Empty at the end", "# Empty at the end"),
    ]


def test_a_run_of_headings_names_each_chunk_by_its_last_heading():
    chunks = chunk_pages([Page(None, "# A\n# B\n# C\n# D")], size=8, overlap=0)
    assert [(chunk.heading, chunk.text) for chunk in chunks] == [
        ("B", "# A\n# B"),
        ("D", "# C\n# D"),
    ]


def test_a_long_sentence_without_stops_still_overlaps():
    text = "alpha beta gamma delta epsilon zeta eta theta"
    assert texts(text, size=20, overlap=8) == [
        "alpha beta",
        "beta gamma delta",
        "delta epsilon zeta",
        "zeta eta theta",
    ]


def test_a_hash_inside_a_code_fence_is_no_heading_and_its_blank_lines_hold():
    text = "# Setup\n\n```sh\n# install it\n\npip install owl\n```\n\nDone."
    chunks = chunk_pages([Page(None, text)], size=40, overlap=0)
    assert {chunk.heading for chunk in chunks} == {"Setup"}
    assert "```sh\n# install it\n\npip install owl\n```" in [chunk.text for chunk in chunks]


def test_headings_carry_over_to_the_next_pages_and_chunks_keep_their_page():
    pages = [Page(1, "# Results\n\nOn page one."), Page(2, "Still results."), Page(3, "# End\nx")]
    chunks = chunk_pages(pages, size=100, overlap=0)
    assert [(c.page, c.heading, c.text) for c in chunks] == [
        (1, "Results", "# Results\n\nOn page one."),
        (2, "Results", "Still results."),
        (3, "End", "# End\nx"),
    ]


def test_a_long_paragraph_is_cut_at_sentence_ends():
    text = "Owls hunt at night. Mice hide in holes! Do voles run? Yes, they do."
    assert texts(text, size=40) == [
        "Owls hunt at night. Mice hide in holes!",
        "Do voles run? Yes, they do.",
    ]


def test_a_long_sentence_is_cut_at_spaces_and_a_long_word_anywhere():
    assert texts("one two three four five six", size=10) == ["one two", "three four", "five six"]
    assert texts("x" * 25, size=10) == ["x" * 10, "x" * 10, "x" * 5]


def test_line_ends_in_a_long_paragraph_are_places_to_cut():
    text = "- first item\n- second item\n- third item"
    assert texts(text, size=28) == ["- first item\n- second item", "- third item"]


def test_overlap_starts_at_a_word_within_the_section_only():
    text = "Owls hunt at night. Mice hide in holes. Voles run.\n\n# Next\n\nNew section here."
    chunks = chunk_pages([Page(None, text)], size=40, overlap=12)
    assert [(chunk.heading, chunk.text) for chunk in chunks] == [
        ("", "Owls hunt at night. Mice hide in holes."),
        ("", "in holes. Voles run."),
        ("Next", "# Next\n\nNew section here."),
    ]


def test_whitespace_pages_give_no_chunks():
    assert chunk_pages([Page(1, ""), Page(2, " \n\n\t\u2028 ")]) == []


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (100, 100), (100, -1), (10.5, 1)])
def test_sizes_that_cannot_work_are_config_errors(size, overlap):
    with pytest.raises(ConfigError, match="chunk (size|overlap)"):
        chunk_pages([Page(None, "text")], size=size, overlap=overlap)


# The alphabet stresses what the chunker looks at: headings, fences, sentence ends, blank
# lines, whitespace that str.isspace knows and a "\n" split does not, and wide characters.
ALPHABET = st.sampled_from(
    list("ab ") * 6
    + list("#\n\n.!?`~-")
    + [" \n", "\n\n", "# ", "```\n", "\t", "\xa0"]
    + ["\u2028", "\r", "é", "漢", "😀", "  ", "## T\n", ". "]
)


@settings(max_examples=400, deadline=None)
@given(
    pages=st.lists(st.lists(ALPHABET, max_size=300).map("".join), min_size=1, max_size=3),
    size=st.integers(1, 120),
    overlap_fraction=st.floats(0, 0.99),
)
def test_chunks_are_exact_spans_that_cover_every_character(pages, size, overlap_fraction):
    overlap = int(size * overlap_fraction)
    doc = [Page(number, text) for number, text in enumerate(pages, start=1)]
    chunks = chunk_pages(doc, size=size, overlap=overlap)
    by_page: dict[int, list[Chunk]] = {}
    for chunk in chunks:
        text = doc[chunk.page - 1].text
        assert text[chunk.start : chunk.end] == chunk.text
        assert chunk.text and chunk.text.strip() == chunk.text
        assert len(chunk.text) <= size
        by_page.setdefault(chunk.page, []).append(chunk)
    for page in doc:
        own = by_page.get(page.number, [])
        for before, after in zip(own, own[1:], strict=False):
            assert before.start < after.start and before.end < after.end
            assert after.start >= before.end - overlap  # the overlap is at most `overlap`
        covered = set()
        for chunk in own:
            covered.update(range(chunk.start, chunk.end))
        assert {i for i, char in enumerate(page.text) if not char.isspace()} <= covered
