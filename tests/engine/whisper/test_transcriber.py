"""WhisperTranscriber with the embedded tiny.en on speech made by espeak-ng."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from owl.engine.audio import decode_audio
from owl.engine.backend import Capability
from owl.engine.whisper import WhisperTranscriber
from owl.errors import EngineError, InvalidAudio, InvalidParameter
from tests.engine.whisper.conftest import THREADS
from tests.support.speech_files import (
    SENTENCES,
    converted,
    share_heard,
    whisper_folder,
)

LIMITS = {"max_seconds": 3600, "max_bytes": 100 << 20}


def test_the_spoken_words_come_back(
    transcriber: WhisperTranscriber, sentence_wavs: list[Path]
) -> None:
    shares = []
    for sentence, wav in zip(SENTENCES, sentence_wavs, strict=True):
        transcript = transcriber.transcribe(wav)
        assert transcript.language == "en" and transcript.task == "transcribe"
        shares.append(share_heard(sentence, transcript.text))
    # tiny.en hears 75-100% of these sentences' content words from espeak-ng's voice.
    assert min(shares) >= 0.6, shares
    assert sum(shares) / len(shares) >= 0.75, shares


@pytest.mark.parametrize("suffix", [".wav", ".flac", ".mp3", ".ogg"])
def test_every_format_gives_the_transcript(
    transcriber: WhisperTranscriber, sentence_wavs: list[Path], suffix: str
) -> None:
    wav = sentence_wavs[1]
    audio = wav if suffix == ".wav" else converted(wav, suffix)
    transcript = transcriber.transcribe(audio.read_bytes())
    assert share_heard(SENTENCES[1], transcript.text) >= 0.6, transcript.text


@pytest.mark.parametrize(
    "settings",
    [{}, {"word_timestamps": True, "prompt": "A note about the garden.", "temperature": 0.0}],
    ids=["defaults", "words-prompt-temperature"],
)
def test_the_words_equal_faster_whisper_used_directly(
    transcriber: WhisperTranscriber, passage_wav: Path, settings: dict
) -> None:
    from faster_whisper import WhisperModel

    direct = WhisperModel(
        str(whisper_folder()), device="cpu", compute_type="int8", cpu_threads=THREADS
    )
    theirs = dict(settings)
    if "prompt" in theirs:
        theirs["initial_prompt"] = theirs.pop("prompt")
    pieces, _ = direct.transcribe(str(passage_wav), **theirs)
    expected = list(pieces)
    ours = transcriber.transcribe(passage_wav, **settings)
    assert ours.text == "".join(piece.text for piece in expected).strip()
    assert [s.tokens for s in ours.segments] == [tuple(p.tokens) for p in expected]
    assert [s.temperature for s in ours.segments] == [p.temperature for p in expected]


def test_segments_are_in_order_within_the_audio(
    transcriber: WhisperTranscriber, passage_wav: Path
) -> None:
    transcript = transcriber.transcribe(passage_wav, word_timestamps=True)
    segments = transcript.segments
    assert len(segments) >= 2
    assert [s.id for s in segments] == list(range(len(segments)))
    assert transcript.text == "".join(s.text for s in segments).strip()
    for before, after in zip(segments, segments[1:], strict=False):
        assert before.start <= before.end <= after.start <= after.end
    assert 0 <= segments[0].start and segments[-1].end <= transcript.duration
    words = [word for segment in segments for word in segment.words]
    assert words and all(0 <= w.start <= w.end <= transcript.duration for w in words)
    assert all(0 <= w.probability <= 1 for w in words)


def test_the_transcript_renders_as_subtitles(
    transcriber: WhisperTranscriber, passage_wav: Path
) -> None:
    transcript = transcriber.transcribe(passage_wav)
    count = len(transcript.segments)
    srt = transcript.render("srt")
    assert srt.startswith("1\n00:00:00,000 --> 00:00:") and srt.count(" --> ") == count
    assert f"\n\n{count}\n" in srt
    vtt = transcript.render("vtt")
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> ") and vtt.count(" --> ") == count
    for segment in transcript.segments:
        assert segment.text.strip() in srt and segment.text.strip() in vtt


def test_samples_transcribe_like_the_file(
    transcriber: WhisperTranscriber, sentence_wavs: list[Path]
) -> None:
    samples = decode_audio(sentence_wavs[2], **LIMITS)
    assert transcriber.transcribe(samples).text == transcriber.transcribe(sentence_wavs[2]).text


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"task": "translate"}, "English-only; translation needs a multilingual Whisper"),
        ({"language": "de"}, "English-only and cannot transcribe 'de'"),
        ({"language": "klingon"}, "unknown language 'klingon'; name it by its ISO 639-1 code"),
    ],
)
def test_what_tiny_en_cannot_do_is_refused(
    transcriber: WhisperTranscriber, sentence_wavs: list[Path], settings: dict, message: str
) -> None:
    with pytest.raises(InvalidAudio, match=message):
        transcriber.transcribe(sentence_wavs[0], **settings)


def test_english_named_explicitly_is_fine(
    transcriber: WhisperTranscriber, sentence_wavs: list[Path]
) -> None:
    transcript = transcriber.transcribe(sentence_wavs[0], language="EN")
    assert transcript.language == "en"
    assert share_heard(SENTENCES[0], transcript.text) >= 0.6


@pytest.mark.parametrize(
    "settings", [{"temperature": 1.5}, {"temperature": float("nan")}, {"task": "summarise"}]
)
def test_parameters_out_of_range_are_refused(
    transcriber: WhisperTranscriber, sentence_wavs: list[Path], settings: dict
) -> None:
    with pytest.raises(InvalidParameter):
        transcriber.transcribe(sentence_wavs[0], **settings)


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        (np.zeros((2, 16000), dtype=np.float32), "one channel of floats"),
        (np.zeros(16000, dtype=np.int16), "one channel of floats"),
        (np.zeros(0, dtype=np.float32), "no samples"),
        (np.full(16000, np.nan, dtype=np.float32), "NaN or infinity"),
        (np.zeros(16000 * 11, dtype=np.float32), "more than the 10 s"),
    ],
)
def test_unusable_samples_are_refused(
    transcriber: WhisperTranscriber, samples: np.ndarray, message: str
) -> None:
    with pytest.raises(InvalidAudio, match=message):
        transcriber.transcribe(samples, max_seconds=10)


def test_progress_reaches_the_duration(transcriber: WhisperTranscriber, passage_wav: Path) -> None:
    calls: list[tuple[float, float]] = []
    transcript = transcriber.transcribe(passage_wav, progress=lambda *done: calls.append(done))
    assert len(calls) == len(transcript.segments) + 1
    assert all(total == transcript.duration for _, total in calls)
    done = [seconds for seconds, _ in calls]
    assert done == sorted(done) and done[-1] == transcript.duration


def test_describes_itself(transcriber: WhisperTranscriber) -> None:
    assert transcriber.capabilities == frozenset({Capability.TRANSCRIBE})
    assert transcriber.name == "model" and transcriber.english_only
    assert transcriber.n_ctx == 448
    assert transcriber.memory_bytes > (whisper_folder() / "model.bin").stat().st_size


def test_one_transcription_runs_while_the_next_waits(
    transcriber: WhisperTranscriber, sentence_wavs: list[Path]
) -> None:
    seen = []
    second = threading.Thread(target=transcriber.transcribe, args=(sentence_wavs[1],))

    def progress(done: float, duration: float) -> None:
        if second.ident is None:
            second.start()
            _until(lambda: transcriber.occupancy().waiting == 1)
            seen.append(transcriber.occupancy())

    transcriber.transcribe(sentence_wavs[0], progress=progress)
    second.join()
    assert [(o.slots, o.running, o.waiting) for o in seen] == [(1, 1, 1)]
    assert transcriber.occupancy().busy == 0


def test_close_cancels_at_the_next_segment_and_unloads(passage_wav: Path) -> None:
    own = WhisperTranscriber(whisper_folder(), threads=THREADS)
    closer = threading.Thread(target=own.close, kwargs={"cancel": True})

    def progress(done: float, duration: float) -> None:
        if closer.ident is None:
            closer.start()
            _until(own._cancel.is_set)  # close has asked; it now waits for this segment

    with pytest.raises(EngineError, match="stopped: 'model' is unloading"):
        own.transcribe(passage_wav, progress=progress)
    closer.join()
    with pytest.raises(EngineError, match="unloaded; load it again"):
        own.transcribe(passage_wav)
    assert own.occupancy().busy == 0


def test_a_folder_without_a_model_is_refused_without_the_hub(tmp_path: Path) -> None:
    # faster-whisper would take the name of a missing folder as a Hub model to download.
    with pytest.raises(EngineError, match="not a CTranslate2 Whisper folder"):
        WhisperTranscriber(tmp_path / "tiny.en")


def _until(condition, limit: float = 120.0) -> None:
    """Wait for another thread to reach a state; the limit only ends a hung test."""
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "the other thread never got there"
        time.sleep(0.01)
