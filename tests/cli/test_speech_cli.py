"""owl speak and owl transcribe as a user runs them: a round trip through the embedded voice
and Whisper, the output formats, text from stdin, and refusals as one line with exit 1."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import pytest

from owl.engine.audio import decode_audio
from tests.support.cli import owl
from tests.support.speech_files import share_heard, spoken
from tests.support.tiny_wav2vec2 import build_tiny_wav2vec2, reference_transcript

pytestmark = pytest.mark.slow  # each command loads a speech model in its process

SAID = "Please water the plants in the kitchen every morning."


def test_speak_then_transcribe(owl_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "said.wav"
    spoke = owl(owl_env, "speak", SAID, "-o", str(out))
    assert spoke.returncode == 0, spoke.stderr
    with wave.open(str(out)) as read:
        assert read.getframerate() == 22050 and read.getnframes() > 22050
    heard = owl(owl_env, "transcribe", str(out))
    assert heard.returncode == 0, heard.stderr
    assert share_heard(SAID, heard.stdout) >= 0.6, heard.stdout
    as_json = json.loads(owl(owl_env, "transcribe", str(out), "--json").stdout)
    assert as_json["language"] == "en" and as_json["segments"] and as_json["duration"] > 1


def test_text_from_stdin_and_other_formats(owl_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "dash.mp3"
    spoke = owl(owl_env, "speak", "-", "-o", str(out), stdin="--help is what this says.")
    assert spoke.returncode == 0, spoke.stderr
    assert out.read_bytes()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")  # an mp3
    wav = spoken("Turn left at the next corner.", tmp_path / "espeak.wav")
    srt = owl(owl_env, "transcribe", str(wav), "--format", "srt")
    assert srt.returncode == 0 and srt.stdout.startswith("1\n00:00:00,000 --> ")


def test_refusals_are_one_line(owl_env: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio at all")
    for args, words in [
        (("transcribe", str(junk)), "not audio"),
        (("transcribe", str(junk), "--model", "smollm2"), "not a speech-to-text"),
        (("speak", "hi", "-o", str(tmp_path / "x.ogg")), "cannot write 'ogg'"),
        (("speak", "hi", "-o", str(tmp_path / "x.wav"), "--voice", "whisper"), "not a voice"),
        (("speak", "   ", "-o", str(tmp_path / "x.wav")), "nothing to say"),
    ]:
        result = owl(owl_env, *args)
        assert result.returncode != 0 and words in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_pulled_wav2vec2_transcribes_and_says_what_it_cannot_do(
    owl_env: Path, tmp_path: Path
) -> None:
    folder = build_tiny_wav2vec2(tmp_path / "tiny-wav2vec2")
    assert owl(owl_env, "pull", str(folder), "--name", "w2v").returncode == 0
    wav = spoken("Turn left at the next corner.", tmp_path / "corner.wav")
    samples = decode_audio(wav, max_seconds=60, max_bytes=10 << 20)
    heard = owl(owl_env, "transcribe", str(wav), "--model", "w2v", "--json")
    assert heard.returncode == 0, heard.stderr
    assert json.loads(heard.stdout)["text"] == reference_transcript(folder, samples).strip()
    assert "Loading weights" not in heard.stderr  # transformers' progress bar stays quiet
    chat = owl(owl_env, "run", "w2v", "hello")
    assert chat.returncode != 0 and "is a speech-to-text model" in chat.stderr
    assert "owl transcribe AUDIO --model w2v" in chat.stderr
