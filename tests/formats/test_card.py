"""Model cards: the front matter, and the license field as written (owl.licenses judges it)."""

from __future__ import annotations

from pathlib import Path

from owl.formats.card import card_license, card_metadata, read_card


def test_card_metadata_reads_only_the_front_matter() -> None:
    assert card_metadata("---\nlicense: mit\ntags: [a]\n---\nlicense: gpl\n") == {
        "license": "mit",
        "tags": ["a"],
    }


def test_the_license_field_is_returned_as_written() -> None:
    assert card_license("---\nlicense: Apache-2.0\n---\n") == "Apache-2.0"
    assert card_license("---\nlicense: other\nlicense_name: acme\n---\n") == "other"
    assert card_license("---\nlicense: [mit, apache-2.0]\n---\n") == "mit, apache-2.0"
    assert card_license("# no front matter\nlicense: mit\n") is None
    assert card_license("---\nlicense: [apache-2.0\n---\n") is None


def test_a_card_is_read_up_to_its_limit(tmp_path: Path) -> None:
    card = tmp_path / "README.md"
    card.write_bytes(b"---\nlicense: mit\n---\n" + b"\xff" * 8)
    assert read_card(card).startswith("---\nlicense: mit\n---\n")
