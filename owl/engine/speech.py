"""What the speech backends return: a transcript (speech to text) and speech (text to speech),
each rendering itself to the formats the CLI and the OpenAI audio API offer.

The backends (owl/engine/whisper/, owl/engine/piper/) fill these; the CLI and server only
choose a format. Times are seconds from the start of the audio.
"""

from __future__ import annotations

import io
import json
import wave
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from owl.errors import InvalidAudio

TRANSCRIPT_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
SPEECH_FORMATS = ("wav", "pcm", "flac", "mp3")


@dataclass(frozen=True)
class Word:
    start: float
    end: float
    word: str
    probability: float


@dataclass(frozen=True)
class Segment:
    id: int
    start: float
    end: float
    text: str
    avg_logprob: float = 0.0
    no_speech_prob: float = 0.0
    compression_ratio: float = 0.0
    temperature: float = 0.0
    tokens: tuple[int, ...] = ()
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """The text of some audio, its language, its length, and its timed segments."""

    text: str
    language: str
    duration: float
    segments: tuple[Segment, ...] = field(default_factory=tuple)
    task: str = "transcribe"  # transcribe | translate (to English)

    def render(self, response_format: str) -> str:
        """The transcript as `response_format` (TRANSCRIPT_FORMATS), OpenAI's shapes."""
        if response_format == "text":
            return self.text + "\n"
        if response_format == "json":
            return json.dumps({"text": self.text})
        if response_format == "verbose_json":
            return json.dumps(self.verbose())
        if response_format == "srt":
            return "\n".join(
                f"{index}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
                for index, s in enumerate(self.segments, start=1)
            )
        if response_format == "vtt":
            cues = "".join(
                f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n\n"
                for s in self.segments
            )
            return "WEBVTT\n\n" + cues
        raise ValueError(f"unknown transcript format {response_format!r}")

    def verbose(self) -> dict[str, Any]:
        words = [asdict(word) for segment in self.segments for word in segment.words]
        body: dict[str, Any] = {
            "task": self.task,
            "language": self.language,
            "duration": round(self.duration, 3),
            "text": self.text,
            "segments": [
                {
                    key: value
                    for key, value in asdict(segment).items()
                    if key != "words" and not (key == "tokens" and not value)
                }
                | {"seek": 0}
                for segment in self.segments
            ],
        }
        if words:
            body["words"] = words
        return body


@dataclass(frozen=True)
class Speech:
    """Mono audio: float samples in [-1, 1] at `sample_rate`."""

    samples: np.ndarray
    sample_rate: int

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    def pcm16(self) -> bytes:
        """Signed 16-bit little-endian samples: OpenAI's `pcm` format, a WAV file's data."""
        clipped = np.clip(np.asarray(self.samples, dtype=np.float32), -1.0, 1.0)
        return (clipped * 32767).astype("<i2").tobytes()

    def encode(self, response_format: str) -> bytes:
        """The audio as a file of `response_format` (SPEECH_FORMATS)."""
        if response_format == "pcm":
            return self.pcm16()
        if response_format == "wav":
            buffer = io.BytesIO()
            with wave.open(buffer, "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(self.sample_rate)
                out.writeframes(self.pcm16())
            return buffer.getvalue()
        if response_format in ("flac", "mp3"):
            return _encoded_with_av(self, response_format)
        raise ValueError(f"unknown speech format {response_format!r}")


def _encoded_with_av(speech: Speech, container: str) -> bytes:
    """flac and mp3 through PyAV (FFmpeg's encoders, bundled with faster-whisper's av)."""
    try:
        import av
    except ImportError:
        raise InvalidAudio(
            f"{container} output needs PyAV: pip install 'owl[audio]', or ask for wav or pcm"
        ) from None
    codec = {"flac": "flac", "mp3": "libmp3lame"}[container]
    buffer = io.BytesIO()
    try:
        with av.open(buffer, "w", format=container) as out:
            stream = out.add_stream(codec, rate=speech.sample_rate, layout="mono")
            samples = np.frombuffer(speech.pcm16(), dtype="<i2").reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
            frame.sample_rate = speech.sample_rate
            for packet in stream.encode(frame):
                out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
    except (av.error.FFmpegError, ValueError) as err:  # an encoder this build lacks
        raise InvalidAudio(f"cannot encode {container} here ({err}); ask for wav or pcm") from None
    return buffer.getvalue()


def _clock(seconds: float, comma: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{comma}{millis:03d}"
