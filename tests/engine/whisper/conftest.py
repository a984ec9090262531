"""One loaded Whisper and the spoken sentences, shared by the session (both read-only)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from owl.engine.whisper import WhisperTranscriber
from tests.support.speech_files import SENTENCES, spoken, whisper_folder

# The tests compare with faster-whisper used directly at this many threads: the same
# threads, so that nothing but owl's own code differs.
THREADS = 2


@pytest.fixture(scope="session")
def sentence_wavs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Each of SENTENCES spoken into its own wav."""
    folder = tmp_path_factory.mktemp("sentences")
    return [spoken(text, folder / f"sentence-{i}.wav") for i, text in enumerate(SENTENCES)]


@pytest.fixture(scope="session")
def passage_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All of SENTENCES in one wav (about 15 s): long enough for several segments."""
    return spoken(" ".join(SENTENCES), tmp_path_factory.mktemp("passage") / "passage.wav")


@pytest.fixture(scope="session")
def transcriber() -> Iterator[WhisperTranscriber]:
    loaded = WhisperTranscriber(whisper_folder(), threads=THREADS)
    yield loaded
    loaded.close()
