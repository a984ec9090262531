"""The speech result types render themselves: transcripts in OpenAI's five formats, speech
as wav, pcm, flac and mp3 that a decoder reads back."""

from __future__ import annotations

import io
import json
import wave

import av
import numpy as np
import pytest

from owl.engine.speech import Segment, Speech, Transcript, Word

TRANSCRIPT = Transcript(
    text="Hello there. General Kenobi.",
    language="en",
    duration=3725.5,
    segments=(
        Segment(0, 0.0, 1.25, " Hello there.", words=(Word(0.0, 0.5, " Hello", 0.9),)),
        Segment(1, 3600.0, 3725.5, " General Kenobi."),
    ),
)


def test_text_json_and_verbose_json() -> None:
    assert TRANSCRIPT.render("text") == "Hello there. General Kenobi.\n"
    assert json.loads(TRANSCRIPT.render("json")) == {"text": TRANSCRIPT.text}
    verbose = json.loads(TRANSCRIPT.render("verbose_json"))
    assert (verbose["task"], verbose["language"], verbose["duration"]) == (
        "transcribe",
        "en",
        3725.5,
    )
    assert [s["text"] for s in verbose["segments"]] == [" Hello there.", " General Kenobi."]
    assert verbose["words"] == [{"start": 0.0, "end": 0.5, "word": " Hello", "probability": 0.9}]


def test_srt_and_vtt_clocks() -> None:
    srt = TRANSCRIPT.render("srt")
    assert "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n" in srt
    assert "2\n01:00:00,000 --> 01:02:05,500\nGeneral Kenobi.\n" in srt
    vtt = TRANSCRIPT.render("vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\nHello there.\n")
    with pytest.raises(ValueError, match="unknown transcript format"):
        TRANSCRIPT.render("docx")


SPEECH = Speech(np.sin(np.linspace(0, 2000, 11025)).astype(np.float32) * 1.5, 22050)


def test_wav_and_pcm() -> None:
    pcm = SPEECH.pcm16()
    assert len(pcm) == 2 * len(SPEECH.samples)
    assert np.abs(np.frombuffer(pcm, "<i2")).max() == 32767  # clipped, not wrapped
    with wave.open(io.BytesIO(SPEECH.encode("wav"))) as read:
        assert (read.getnchannels(), read.getframerate(), read.getnframes()) == (1, 22050, 11025)
        assert read.readframes(read.getnframes()) == pcm


@pytest.mark.parametrize("container", ["flac", "mp3"])
def test_flac_and_mp3_decode_back(container: str) -> None:
    with av.open(io.BytesIO(SPEECH.encode(container))) as read:
        frames = [frame.to_ndarray() for frame in read.decode(audio=0)]
        rate = read.streams.audio[0].sample_rate
    samples = sum(frame.shape[-1] for frame in frames)
    assert rate == 22050
    assert abs(samples - len(SPEECH.samples)) <= 2 * 1152  # mp3 pads by up to two frames
