"""decode_audio on real files of every format, and on bytes that are not what they claim."""

from __future__ import annotations

import random
import struct
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from owl.engine.audio import SAMPLE_RATE, decode_audio
from owl.errors import InvalidAudio
from tests.support.speech_files import converted, spoken

LIMITS = {"max_seconds": 600, "max_bytes": 10 << 20}
NOT_AUDIO = "not audio owl can decode"


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("audio")
    return spoken("The kettle is boiling in the kitchen.", folder / "kettle.wav")


@pytest.fixture(scope="module")
def wav_bytes(wav: Path) -> bytes:
    return wav.read_bytes()


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg", ".webm", ".m4a"])
def test_each_format_decodes_to_faster_whispers_samples(wav: Path, suffix: str) -> None:
    import faster_whisper

    audio = wav if suffix == ".wav" else converted(wav, suffix)
    samples = decode_audio(audio.read_bytes(), **LIMITS)
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert np.array_equal(samples, faster_whisper.decode_audio(str(audio)))
    assert np.array_equal(samples, decode_audio(audio, **LIMITS))  # a path reads the same
    assert 1.0 < len(samples) / SAMPLE_RATE < 10.0


def test_a_videos_audio_track_is_decoded(wav: Path) -> None:
    picture = "-f lavfi -i testsrc=size=64x64".split()
    video = _ffmpeg(wav.with_name("with-video.mp4"), *picture, "-i", str(wav), "-shortest")
    samples = decode_audio(video, **LIMITS)
    assert 1.0 < len(samples) / SAMPLE_RATE < 10.0


def test_a_video_without_sound_is_refused(wav: Path) -> None:
    picture = "-f lavfi -i testsrc=size=64x64:duration=1".split()
    video = _ffmpeg(wav.with_name("silent-film.mp4"), *picture)
    with pytest.raises(InvalidAudio, match="has no audio track"):
        decode_audio(video, **LIMITS)


def _huge_wav_header() -> bytes:
    # A 44-byte wav whose header claims 2 GB of 16-bit samples and holds none.
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 16000, 32000, 2, 16)
    return struct.pack("<4sI4s", b"RIFF", 0x7FFFFFF0, b"WAVE") + fmt + b"data\xe0\xff\xff\x7f"


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("random", lambda wav: random.Random(7).randbytes(4096), NOT_AUDIO),
        ("png", lambda wav: b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64), NOT_AUDIO),
        ("text", lambda wav: b"Dear owl, this is a letter and not a song.\n" * 20, NOT_AUDIO),
        ("empty", lambda wav: b"", "the upload is empty"),
        ("cut-in-the-header", lambda wav: wav[:30], NOT_AUDIO),
        ("header-only", lambda wav: wav[:44], "holds no audio samples"),
        ("huge-header", lambda wav: _huge_wav_header(), "holds no audio samples"),
    ],
)
def test_bytes_that_are_not_audio_are_refused(
    wav_bytes: bytes, name: str, make, message: str
) -> None:
    with pytest.raises(InvalidAudio, match=message):
        decode_audio(make(wav_bytes), **LIMITS)


def test_a_wav_cut_in_its_samples_keeps_what_it_has(wav_bytes: bytes) -> None:
    whole = decode_audio(wav_bytes, **LIMITS)
    half = decode_audio(wav_bytes[: len(wav_bytes) // 2], **LIMITS)
    assert 0 < len(half) < len(whole)


def test_an_upload_over_max_bytes_is_refused_before_decoding(wav_bytes: bytes) -> None:
    with pytest.raises(InvalidAudio, match=r"is 0\.\d MB, more than the 0\.0 MB limit"):
        decode_audio(wav_bytes, max_seconds=600, max_bytes=1000)


def test_a_file_over_max_bytes_is_refused(wav: Path) -> None:
    with pytest.raises(InvalidAudio, match="kettle.wav is .* MB, more than"):
        decode_audio(wav, max_seconds=600, max_bytes=1000)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidAudio, match="cannot read"):
        decode_audio(tmp_path / "nothing.wav", **LIMITS)


def test_audio_over_max_seconds_is_refused(wav_bytes: bytes) -> None:
    with pytest.raises(InvalidAudio, match=r"is \d\.\d s long, more than the 1\.0 s"):
        decode_audio(wav_bytes, max_seconds=1.0, max_bytes=10 << 20)


def test_an_hour_of_silence_in_a_small_file_stops_at_the_limit(tmp_path: Path) -> None:
    # FLAC written to a pipe cannot go back to write its length: the decode finds it out.
    bomb = tmp_path / "silence.flac"
    silence = "-f lavfi -i anullsrc=r=16000:cl=mono -t 3600 -f flac -".split()
    with bomb.open("wb") as out:
        subprocess.run(["ffmpeg", "-loglevel", "error", *silence], stdout=out, check=True)
    assert bomb.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.raises(InvalidAudio, match="is longer than the 10.0 s"):
            decode_audio(bomb, max_seconds=10, max_bytes=10 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The whole hour as 16-bit samples would be 115 MB; ten seconds are 320 kB.
    assert peak < 16 << 20


def test_a_length_the_container_declares_is_refused_before_decoding(tmp_path: Path) -> None:
    silence = "-f lavfi -i anullsrc=r=8000:cl=mono -t 120".split()
    long = _ffmpeg(tmp_path / "long.flac", *silence)
    with pytest.raises(InvalidAudio, match=r"is 2:00 long, more than the 1:00"):
        decode_audio(long, max_seconds=60, max_bytes=10 << 20)


# Each format's first bytes, so that the fuzzed bytes reach each demuxer's parser.
MAGIC = [b"RIFF", b"RIFF\0\0\0\0WAVEfmt ", b"fLaC", b"OggS", b"ID3\x03", b"\xff\xfb"]
MAGIC += [b"\x1aE\xdf\xa3", b"\0\0\0\x20ftypM4A ", b"\xff\xf1"]  # matroska, mp4, aac


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    st.one_of(
        st.binary(max_size=2048),
        st.tuples(st.sampled_from(MAGIC), st.binary(max_size=2048)).map(b"".join),
    )
)
def test_no_bytes_raise_anything_but_invalid_audio(data: bytes) -> None:
    try:
        samples = decode_audio(data, max_seconds=60, max_bytes=1 << 20)
    except InvalidAudio as err:
        assert str(err)
    else:
        assert samples.dtype == np.float32 and samples.size > 0


def _ffmpeg(target: Path, *inputs: str) -> Path:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *inputs, str(target)], check=True)
    return target
