"""Phonemes from the real espeak-ng program; ids by Piper's published recipe."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from owl.engine.piper.clauses import Clause, split_clauses
from owl.engine.piper.phonemes import MAX_TEXT_CHARS, phoneme_ids, phonemize
from owl.errors import EngineError, InvalidAudio

TINY_MAP = {"^": [1], "$": [2], "_": [0], "a": [5], "b": [6], "c": [7], "\u0327": [8]}


def _fake_espeak(folder: Path, script: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stands in for the program to make it fail; owl's own code runs unchanged.
    program = folder / "espeak-ng"
    program.write_text("#!/bin/sh\n" + script + "\n")
    program.chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))


def test_one_string_per_sentence_with_punctuation_kept() -> None:
    sentences = phonemize("Hello, world! How are you today? Fine.", "en-us")
    assert len(sentences) == 3
    assert "," in sentences[0] and sentences[0].endswith("!")
    assert sentences[1].endswith("?") and sentences[2].endswith(".")


def test_ids_match_pipers_published_example(voice_folder: Path) -> None:
    # piper-phonemize's README shows these ids for "This is a test." with this voice's map.
    config = json.loads((voice_folder / "en_US-joe-medium.onnx.json").read_text())
    (sentence,) = phonemize("This is a test.", "en-us")
    assert sentence == "ðɪs ɪz ɐ tˈɛst."
    assert phoneme_ids(sentence, config["phoneme_id_map"]) == [
        1, 0, 41, 0, 74, 0, 31, 0, 3, 0, 74, 0, 38, 0, 3, 0, 50, 0, 3, 0,
        32, 0, 120, 0, 61, 0, 31, 0, 32, 0, 10, 0, 2,
    ]  # fmt: skip


def test_text_that_looks_like_options_is_spoken() -> None:
    (sentence,) = phonemize("-v fr --help me", "en-us")
    assert "hˈɛlp" in sentence and "espeak" not in sentence.lower()


def test_clauses_the_program_counts_differently_still_align() -> None:
    # espeak-ng counts one clause more here than owl's split: each clause runs alone.
    assert phonemize('He left." She said', "en-us") == ["hiː lˈɛft.", "ʃiː sˈɛd"]


def test_control_characters_do_not_cut_the_text() -> None:
    (sentence,) = phonemize("hello\x00 world", "en-us")
    assert "wˈɜːld" in sentence


def test_nothing_to_pronounce_gives_no_sentences() -> None:
    assert phonemize("  . , ;  ", "en-us") == []


def test_a_text_over_the_bound_is_refused() -> None:
    with pytest.raises(InvalidAudio, match=str(MAX_TEXT_CHARS)):
        phonemize("a" * (MAX_TEXT_CHARS + 1), "en-us")


def test_missing_espeak_ng_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineError) as caught:
        phonemize("Hello.", "en-us")
    assert "apt-get install espeak-ng" in str(caught.value)
    assert "brew install espeak-ng" in str(caught.value)


def test_espeak_ng_failing_reports_its_stderr() -> None:
    with pytest.raises(EngineError, match="does not exist"):
        phonemize("Hello.", "xx-nope")


def test_a_program_exiting_non_zero_is_an_engine_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_espeak(tmp_path, "echo 'out of cheese' >&2; exit 3", monkeypatch)
    with pytest.raises(EngineError, match=r"exit 3.*out of cheese"):
        phonemize("Hello.", "en-us")


def test_a_program_that_hangs_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_espeak(tmp_path, f"exec {shutil.which('sleep')} 60", monkeypatch)
    with pytest.raises(EngineError, match="did not finish within 0.5 s"):
        phonemize("Hello.", "en-us", timeout=0.5)


@pytest.mark.parametrize("voice", ["--path=/tmp", "-q", "en us", "../en", ""])
def test_a_voice_name_is_never_an_option(voice: str) -> None:
    with pytest.raises(EngineError, match="not an espeak-ng voice"):
        phonemize("Hello.", voice)


def test_ids_put_the_pad_after_bos_and_each_phoneme() -> None:
    assert phoneme_ids("ab", TINY_MAP) == [1, 0, 5, 0, 6, 0, 2]


def test_unknown_phonemes_are_skipped() -> None:
    assert phoneme_ids("aXb?", TINY_MAP) == [1, 0, 5, 0, 6, 0, 2]


def test_phonemes_are_decomposed_codepoints() -> None:
    assert phoneme_ids("ç", TINY_MAP) == [1, 0, 7, 0, 8, 0, 2]


def test_a_map_without_the_special_phonemes_is_an_engine_error() -> None:
    with pytest.raises(EngineError, match="'\\^'"):
        phoneme_ids("a", {"$": [2], "_": [0], "a": [5]})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Hi, there.", [Clause("Hi,", ",", False), Clause("there.", ".", True)]),
        ("Dr. smith is in.", [Clause("Dr. smith is in.", ".", True)]),
        ("Wait... what?!", [Clause("Wait...", "", False), Clause("what?!", "?", True)]),
        ("left — right", [Clause("left", "", False), Clause("right", "", True)]),
        ("Title\n\nBody", [Clause("Title", "", True), Clause("Body", "", True)]),
        ('He said "hi." Then', [Clause('He said "hi."', ".", True), Clause("Then", "", True)]),
        ("3.14 is pi", [Clause("3.14 is pi", "", True)]),
    ],
)
def test_clauses_follow_espeak_ngs_breaks(text: str, expected: list[Clause]) -> None:
    spoken = [clause for clause in split_clauses(text) if clause.text]
    assert spoken == expected


def test_a_very_long_clause_is_cut_at_words() -> None:
    clauses = split_clauses("word " * 250)
    assert [len(clause.text.split()) for clause in clauses] == [100, 100, 50]
    assert [clause.ends_sentence for clause in clauses] == [False, False, True]
