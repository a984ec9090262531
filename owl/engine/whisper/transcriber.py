"""Speech to text: a CTranslate2 Whisper folder loaded through faster-whisper, on the CPU.

Decoding is faster-whisper's own: owl passes only what its caller set (language, prompt,
temperature, task, word timestamps), so beam search (5), the temperature fallback, the
conditioning on previous text and no VAD are faster-whisper's defaults, and the words equal
those of faster-whisper used directly on the same audio with the same settings.

One transcription runs at a time (CTranslate2 spreads one over `threads` cores already);
others wait their turn. faster-whisper is imported when a transcriber is made: importing
owl.engine loads no library.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from owl.engine.audio import samples_of
from owl.engine.backend import Capability, Occupancy
from owl.engine.speech import Segment, Transcript, Word
from owl.engine.turns import Turns
from owl.errors import EngineError, InvalidAudio, InvalidParameter

# The multilingual Whisper to suggest: CTranslate2's format, which the catalog's openai/*
# repositories (transformers' format) are not.
MULTILINGUAL = (
    "a multilingual Whisper in CTranslate2 format (owl pull hf:Systran/faster-whisper-small)"
)
# RSS over model.bin's size, measured for tiny.en at int8 on the CPU: 0.9x once loaded,
# 2.3x at the peak of a transcription (beam search's decoder cache, encoder activations,
# PyAV's buffers); 2.5x leaves a margin. Not counted: faster-whisper computes the log-mel
# features of the whole audio at once, about 1 MB per second of audio at its peak.
MEMORY_FACTOR = 2.5
TASKS = ("transcribe", "translate")


class WhisperTranscriber:
    """A Whisper model (a CTranslate2 folder: model.bin, config.json, tokenizer.json) that
    turns speech into timed text.

    `threads`: CPU threads for one transcription (default: every core). `compute_type`:
    CTranslate2's weight type on the CPU (int8, int8_float32, float32).
    `n_ctx` is Whisper's text context, 448 tokens: the most a segment's prompt and text
    hold together; the audio window is always 30 seconds.
    """

    capabilities = frozenset({Capability.TRANSCRIBE})

    def __init__(
        self,
        folder: Path,
        *,
        name: str = "",
        threads: int | None = None,
        compute_type: str = "int8",
    ) -> None:
        self.name = name or folder.name
        weights = folder / "model.bin"
        if not weights.is_file():
            # Checked here: faster-whisper takes a name it finds no folder for as a model to
            # download from the Hugging Face Hub.
            raise EngineError(
                f"'{self.name}' is not a CTranslate2 Whisper folder ({weights} is missing)"
            )
        from faster_whisper import WhisperModel

        try:
            self._model: Any = WhisperModel(
                str(folder),
                device="cpu",
                compute_type=compute_type,
                cpu_threads=threads or os.cpu_count() or 1,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as err:
            raise EngineError(f"faster-whisper could not load '{self.name}': {err}") from None
        self.memory_bytes = int(weights.stat().st_size * MEMORY_FACTOR)
        self.n_ctx: int = self._model.max_length
        self.english_only: bool = not self._model.model.is_multilingual
        self._turns = Turns()  # one transcription at a time
        self._cancel = threading.Event()

    def occupancy(self) -> Occupancy:
        return self._turns.occupancy()

    def transcribe(
        self,
        audio: np.ndarray | bytes | Path,
        *,
        language: str | None = None,
        prompt: str | None = None,
        temperature: float | None = None,
        task: str = "transcribe",
        word_timestamps: bool = False,
        max_seconds: float = 3600,
        max_bytes: int = 100 << 20,
        progress: Callable[[float, float], None] | None = None,
    ) -> Transcript:
        """The text of `audio` (16 kHz mono float32 samples, or a file's bytes or path).

        `language`: an ISO 639-1 code such as "en" (default: detected; English on an
        English-only model). `prompt`: text that comes before, to steer spelling and style.
        `temperature`: one sampling temperature instead of faster-whisper's fallback from
        0.0 to 1.0. `task`: "transcribe", or "translate" into English (multilingual models).
        `progress(seconds_done, duration)` is called after each segment and at the end; an
        exception it raises stops the transcription.

        Raises InvalidAudio for audio that cannot be used and for a language or task the
        model cannot do, InvalidParameter for a temperature or task out of range,
        EngineError once the model is unloaded.
        """
        options = self._options(language, prompt, temperature, task, word_timestamps)
        samples = samples_of(audio, max_seconds=max_seconds, max_bytes=max_bytes)
        with self._turns.turn():
            return self._transcribed(samples, options, progress)

    def _options(
        self,
        language: str | None,
        prompt: str | None,
        temperature: float | None,
        task: str,
        word_timestamps: bool,
    ) -> dict[str, Any]:
        """faster-whisper's arguments for what the caller set, checked; nothing else."""
        options: dict[str, Any] = {}
        if task not in TASKS:
            raise InvalidParameter(param="task", reason=f"{task!r} is not one of {TASKS}")
        if task == "translate":
            if self.english_only:
                raise InvalidAudio(
                    f"'{self.name}' is English-only; translation needs {MULTILINGUAL}"
                )
            options["task"] = task
        if language is not None:
            options["language"] = self._language(language)
        if prompt:
            options["initial_prompt"] = prompt
        if temperature is not None:
            if not (math.isfinite(temperature) and 0.0 <= temperature <= 1.0):
                raise InvalidParameter(param="temperature", reason="must be between 0 and 1")
            options["temperature"] = float(temperature)
        if word_timestamps:
            options["word_timestamps"] = True
        return options

    def _language(self, language: str) -> str:
        from faster_whisper.tokenizer import _LANGUAGE_CODES  # what its Tokenizer accepts

        code = language.strip().lower()
        if code not in _LANGUAGE_CODES:
            raise InvalidAudio(
                f"unknown language {language!r}; name it by its ISO 639-1 code, such as "
                "en, de, fr, es, ja or zh (or leave it out to have it detected)"
            )
        if self.english_only and code != "en":
            raise InvalidAudio(
                f"'{self.name}' is English-only and cannot transcribe {code!r}; use {MULTILINGUAL}"
            )
        return code

    def _transcribed(
        self,
        samples: np.ndarray,
        options: dict[str, Any],
        progress: Callable[[float, float], None] | None,
    ) -> Transcript:
        model = self._model
        if model is None:
            raise EngineError(f"'{self.name}' was unloaded; load it again")
        try:
            pieces, info = model.transcribe(samples, **options)
        except (RuntimeError, ValueError) as err:
            raise EngineError(f"faster-whisper could not transcribe: {err}") from None
        duration = float(info.duration)
        segments: list[Segment] = []
        try:
            while not self._cancel.is_set():
                try:  # a generator: each segment is decoded when it is asked for
                    piece = next(pieces)
                except StopIteration:
                    break
                except (RuntimeError, ValueError) as err:
                    raise EngineError(f"faster-whisper could not transcribe: {err}") from None
                segments.append(_segment(len(segments), piece, duration))
                if progress is not None:
                    progress(segments[-1].end, duration)
            else:
                raise EngineError(f"the transcription stopped: '{self.name}' is unloading")
        finally:
            pieces.close()  # a generator left suspended (cancelled, progress raised)
        if progress is not None:
            progress(duration, duration)
        return Transcript(
            text="".join(segment.text for segment in segments).strip(),
            language=info.language,
            duration=duration,
            segments=tuple(segments),
            task=options.get("task", "transcribe"),
        )

    def close(self, *, cancel: bool = False) -> None:
        """Free the model, after the transcription under way ends (with `cancel`, at its next
        segment, with EngineError). Transcriptions still waiting then get EngineError."""
        if cancel:
            self._cancel.set()
        with self._turns.run:
            model, self._model = self._model, None
            if model is not None:
                model.model.unload_model()


def _segment(index: int, piece: Any, duration: float) -> Segment:
    """owl's Segment from faster-whisper's: ids from 0 (OpenAI's), times within the audio
    (Whisper's last timestamp token can point past the end of the audio)."""
    start = _within(piece.start, duration)
    words = tuple(
        Word(
            start=_within(word.start, duration),
            end=_within(word.end, duration),
            word=word.word,
            probability=float(word.probability),
        )
        for word in piece.words or ()
    )
    return Segment(
        id=index,
        start=start,
        end=max(start, _within(piece.end, duration)),
        text=piece.text,
        avg_logprob=float(piece.avg_logprob),
        no_speech_prob=float(piece.no_speech_prob),
        compression_ratio=float(piece.compression_ratio),
        temperature=float(piece.temperature or 0.0),
        tokens=tuple(piece.tokens),
        words=words,
    )


def _within(seconds: float, duration: float) -> float:
    return min(max(float(seconds), 0.0), duration)
