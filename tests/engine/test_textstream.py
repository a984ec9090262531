"""TextStream: UTF-8 split across tokens, stop strings split across tokens."""

from __future__ import annotations

from owl.engine.textstream import TextStream


def _run(pieces: list[bytes], stop: list[str]) -> tuple[list[str], str, bool]:
    stream = TextStream(stop)
    emitted = [stream.push(piece) for piece in pieces]
    return emitted, stream.flush(), stream.stopped


def test_multibyte_characters_across_tokens() -> None:
    owl = "🦉".encode()
    emitted, tail, stopped = _run([b"an ", owl[:2], owl[2:], b"!"], [])
    assert emitted == ["an ", "", "🦉", "!"]
    assert tail == "" and not stopped


def test_stop_string_split_across_tokens_is_cut_and_never_shown() -> None:
    emitted, tail, stopped = _run([b"Hello <", b"|end", b"|> more"], ["<|end|>"])
    assert "".join(emitted) + tail == "Hello "
    assert stopped
    assert emitted[1] == ""  # held back while it could still become the stop string


def test_held_back_text_is_released_when_it_cannot_be_a_stop() -> None:
    emitted, tail, stopped = _run([b"a <", b"b"], ["<|end|>"])
    assert emitted == ["a ", "<b"]
    assert not stopped


def test_text_held_back_at_the_end_is_flushed() -> None:
    emitted, tail, stopped = _run([b"x <|en"], ["<|end|>"])
    assert emitted == ["x "] and tail == "<|en" and not stopped


def test_earliest_of_several_stops_wins() -> None:
    emitted, _, stopped = _run([b"one. two\n three"], ["\n", "."])
    assert emitted == ["one"] and stopped


def test_invalid_utf8_is_replaced_not_raised() -> None:
    emitted, tail, _ = _run([b"ok \xff\xfe"], [])
    assert "".join(emitted) + tail == "ok \ufffd\ufffd"


def test_the_stop_string_that_stopped_it_is_named() -> None:
    stream = TextStream(["\n", "."])
    assert stream.push(b"one. two\n") == "one"
    assert stream.matched == "."
    unstopped = TextStream(["."])
    assert unstopped.push(b"none here") + unstopped.flush() == "none here"
    assert unstopped.matched is None
