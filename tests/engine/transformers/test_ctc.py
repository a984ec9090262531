"""owl's CTC transcriber (wav2vec 2.0) on a tiny random-weight Wav2Vec2ForCTC: the same
transcript as transformers' own recipe, window by window on long audio, word times inside
their segment, and what a CTC model cannot do refused rather than ignored."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from owl import engine
from owl.config import Settings
from owl.engine import Capability
from owl.engine.audio import SAMPLE_RATE, decode_audio
from owl.engine.registry import capabilities_of
from owl.engine.transformers.ctc import WINDOW_SAMPLES, CtcTranscriber
from owl.errors import InvalidAudio, InvalidParameter, WrongModelKind
from owl.pull import pull
from owl.store import Store
from tests.support.speech_files import SENTENCES, spoken
from tests.support.tiny_wav2vec2 import build_tiny_wav2vec2, reference_transcript


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_wav2vec2(tmp_path_factory.mktemp("wav2vec2") / "tiny-wav2vec2")


@pytest.fixture(scope="module")
def transcriber(folder: Path) -> Iterator[CtcTranscriber]:
    loaded = CtcTranscriber(folder, threads=1)
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def sentence(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    wav = spoken(SENTENCES[0], tmp_path_factory.mktemp("ctc") / "sentence.wav")
    return decode_audio(wav, max_seconds=60, max_bytes=10 << 20)


def test_the_transcript_is_transformers_own(
    transcriber: CtcTranscriber, folder: Path, sentence: np.ndarray
) -> None:
    expected = reference_transcript(folder, sentence).strip()
    assert expected  # random weights still spell something
    transcript = transcriber.transcribe(sentence)
    assert transcript.text == expected
    assert transcript.duration == pytest.approx(len(sentence) / SAMPLE_RATE)
    assert [s.text for s in transcript.segments] == [expected]


def test_long_audio_goes_window_by_window(
    transcriber: CtcTranscriber, folder: Path, sentence: np.ndarray
) -> None:
    # Two and a half windows of the sentence said again and again.
    repeats = int(2.5 * WINDOW_SAMPLES / len(sentence)) + 1
    audio = np.tile(sentence, repeats)[: int(2.5 * WINDOW_SAMPLES)]
    seen: list[tuple[float, float]] = []
    transcript = transcriber.transcribe(
        audio, progress=lambda done, total: seen.append((done, total))
    )
    windows = [audio[i : i + WINDOW_SAMPLES] for i in range(0, len(audio), WINDOW_SAMPLES)]
    assert [s.text for s in transcript.segments] == [
        reference_transcript(folder, window).strip() for window in windows
    ]
    assert [s.start for s in transcript.segments] == [0.0, 30.0, 60.0]
    assert transcript.segments[-1].end == pytest.approx(75.0)
    assert [done for done, _ in seen] == [30.0, 60.0, 75.0]
    assert transcript.text == " ".join(s.text for s in transcript.segments)


def test_word_times_are_inside_their_segment_and_spell_it(
    transcriber: CtcTranscriber, sentence: np.ndarray
) -> None:
    segment = transcriber.transcribe(sentence, word_timestamps=True).segments[0]
    words = segment.words
    assert "".join(w.word for w in words).strip() == segment.text
    assert all(segment.start <= w.start < w.end <= segment.end for w in words)
    assert all(a.end <= b.start for a, b in zip(words, words[1:], strict=False))
    assert all(0 < w.probability <= 1 for w in words)


def test_silence_gives_no_segment(transcriber: CtcTranscriber, folder: Path) -> None:
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    expected = reference_transcript(folder, silence).strip()
    transcript = transcriber.transcribe(silence)
    assert transcript.text == expected
    assert len(transcript.segments) == (1 if expected else 0)


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"prompt": "Friday"}, InvalidParameter, "reads no prompt"),
        ({"temperature": 0.4}, InvalidParameter, "decodes greedily"),
        ({"task": "translate"}, InvalidAudio, "cannot translate"),
        ({"task": "summarise"}, InvalidParameter, "not transcribe"),
    ],
)
def test_what_ctc_cannot_do_is_refused(
    transcriber: CtcTranscriber, sentence: np.ndarray, options: dict, error: type, words: str
) -> None:
    with pytest.raises(error, match=words):
        transcriber.transcribe(sentence, **options)


def test_temperature_zero_and_a_language_are_taken(
    transcriber: CtcTranscriber, sentence: np.ndarray
) -> None:
    plain = transcriber.transcribe(sentence)
    assert plain.language == "und"
    told = transcriber.transcribe(sentence, temperature=0.0, language="EN")
    assert (told.text, told.language) == (plain.text, "en")


def test_a_folder_of_another_class_is_refused(tmp_path: Path, folder: Path) -> None:
    other = tmp_path / "llm"
    other.mkdir()
    (other / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    with pytest.raises(WrongModelKind, match="LlamaForCausalLM, not a \\*ForCTC"):
        CtcTranscriber(other)


def test_a_stored_wav2vec2_transcribes_and_refuses_to_chat(
    folder: Path, store: Store, settings: Settings, sentence: np.ndarray
) -> None:
    manifest = pull(str(folder), store=store, settings=settings, name="w2v")
    assert capabilities_of(manifest, store=store) == {Capability.TRANSCRIBE}
    loaded = engine.load(manifest, store=store, settings=settings, capability=Capability.TRANSCRIBE)
    try:
        assert loaded.transcribe(sentence).text == reference_transcript(folder, sentence).strip()
    finally:
        loaded.close()
    with pytest.raises(WrongModelKind, match="'w2v' is a speech-to-text model"):
        engine.load(manifest, store=store, settings=settings, capability=Capability.CHAT)
