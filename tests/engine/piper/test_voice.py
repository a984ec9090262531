"""Speech from the real embedded voice (en_US-joe-medium), with the real espeak-ng.

The model draws its noise inside the graph, so no test asserts samples or exact lengths:
durations are compared with margins far wider than the run-to-run spread (about ±5%).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from owl.engine.backend import Capability, Occupancy
from owl.engine.piper import PiperVoice
from owl.engine.piper.voice import SENTENCE_SILENCE_S
from owl.errors import EngineError, InvalidAudio

# The voice loads in about two seconds: the fast lane (`-m "not slow"`) leaves these out.
pytestmark = pytest.mark.slow

SENTENCE = "Hello there, how are you doing today?"


@pytest.fixture(scope="module")
def voice(voice_folder: Path) -> Iterator[PiperVoice]:
    loaded = PiperVoice(voice_folder, name="joe")
    yield loaded
    loaded.close()


def _rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))


def test_what_the_voice_declares(voice: PiperVoice, voice_folder: Path) -> None:
    assert voice.name == "joe"
    assert voice.capabilities == frozenset({Capability.SPEAK})
    assert voice.sample_rate == 22050 and voice.n_ctx == 0
    assert voice.memory_bytes > (voice_folder / "en_US-joe-medium.onnx").stat().st_size
    assert voice.occupancy() == Occupancy(1, 0, 0)


def test_a_sentence_is_spoken(voice: PiperVoice) -> None:
    speech = voice.speak(SENTENCE)
    assert speech.sample_rate == 22050
    assert speech.samples.dtype == np.float32 and speech.samples.ndim == 1
    assert np.abs(speech.samples).max() <= 1.0
    # English speech runs at about 15 characters a second (this text: about 2 s).
    assert len(SENTENCE) / 60 < speech.duration < len(SENTENCE) / 5
    assert _rms(speech.samples) > 0.01  # speech, not silence (about 0.05 here)


def test_faster_speech_is_shorter(voice: PiperVoice) -> None:
    normal = voice.speak(SENTENCE).duration
    fast = voice.speak(SENTENCE, speed=2.0).duration
    slow = voice.speak(SENTENCE, speed=0.5).duration
    assert fast < 0.8 * normal < 0.8 * slow


def test_sentences_are_joined_by_silence(voice: PiperVoice) -> None:
    samples = voice.speak("One sentence here. And another one there.").samples
    gap = round(voice.sample_rate * SENTENCE_SILENCE_S)
    zero = np.concatenate([[False], samples == 0.0, [False]])
    edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
    runs = edges[1::2] - edges[::2]
    assert runs.size and runs.max() >= gap  # the model itself never gives 0.2 s of zeros


def test_text_that_looks_like_options_is_spoken(voice: PiperVoice) -> None:
    for text in ("-v fr", "--help", "say --version -q now"):
        speech = voice.speak(text)
        assert speech.duration > 0.3 and _rms(speech.samples) > 0.01


@pytest.mark.parametrize("speed", [0.1, 0.2499, 4.01, 100.0, float("nan"), float("inf"), True])
def test_a_speed_outside_openais_range(voice: PiperVoice, speed: float) -> None:
    with pytest.raises(InvalidAudio, match="between 0.25 and 4.0"):
        voice.speak(SENTENCE, speed=speed)


@pytest.mark.parametrize("text", ["", "   ", "\n\t\n"])
def test_empty_text(voice: PiperVoice, text: str) -> None:
    with pytest.raises(InvalidAudio, match="nothing to say"):
        voice.speak(text)


@pytest.mark.parametrize("text", ["...", "🙂 ?!", "— — —"])
def test_text_with_nothing_to_pronounce(voice: PiperVoice, text: str) -> None:
    with pytest.raises(InvalidAudio, match="nothing to say"):
        voice.speak(text)


def test_text_over_the_limit(voice: PiperVoice) -> None:
    with pytest.raises(InvalidAudio, match="more than the 20"):
        voice.speak(SENTENCE, max_chars=20)


def test_missing_espeak_ng_says_how_to_install_it(
    voice: PiperVoice, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineError, match="apt-get install espeak-ng"):
        voice.speak(SENTENCE)
    assert voice.occupancy() == Occupancy(1, 0, 0)  # the failed call counted out again


def test_a_very_long_sentence_is_spoken_in_runs(voice: PiperVoice) -> None:
    # 45 words and no punctuation: more phonemes than one run of the model takes.
    text = " ".join(["words"] * 45)
    speech = voice.speak(text)
    assert speech.duration > 45 * 0.15 and _rms(speech.samples) > 0.01


def test_calls_take_turns_and_are_counted(voice: PiperVoice) -> None:
    results: list[float] = []
    with voice._turns.run:  # hold the synthesis so that two calls queue behind it
        threads = [
            threading.Thread(target=lambda: results.append(voice.speak("Hi.").duration))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for _ in range(6000):  # the two calls count themselves in before they wait
            if voice.occupancy().busy == 2:
                break
            time.sleep(0.01)
        assert voice.occupancy() == Occupancy(1, 1, 1)
    for thread in threads:
        thread.join()
    assert len(results) == 2 and voice.occupancy() == Occupancy(1, 0, 0)


def test_a_closed_voice_refuses_to_speak(voice_folder: Path) -> None:
    own = PiperVoice(voice_folder)
    own.close()
    own.close(cancel=True)  # closing twice is harmless
    with pytest.raises(EngineError, match="unloaded"):
        own.speak(SENTENCE)
