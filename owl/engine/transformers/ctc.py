"""Speech to text with CTC models (wav2vec 2.0, HuBERT, …): a Hugging Face folder whose
config.json names a *ForCTC class, run by transformers on the CPU.

Decoding is greedy, as transformers' own examples and its ASR pipeline do without a language
model: the most likely token of each 20 ms frame, repeats merged, blanks dropped, by the
folder's own Wav2Vec2CTCTokenizer. The audio goes through the model in windows of 30 s:
attention is quadratic in the frames, and a whole hour at once would need hundreds of GB. A
recording up to one window long gives exactly transformers' own transcript
(tests/engine/transformers/test_ctc.py compares them); longer ones may split a word where two
windows meet.

A CTC model has no prompt, no sampling and no translation: those are refused, not ignored.
torch and transformers are imported when a transcriber is made.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from owl.engine.audio import SAMPLE_RATE, samples_of
from owl.engine.backend import Capability, Occupancy
from owl.engine.speech import Segment, Transcript, Word
from owl.engine.turns import Turns
from owl.errors import EngineError, InvalidAudio, InvalidParameter, WrongModelKind
from owl.formats.hf_folder import model_class_of, read_folder_config

WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE
FLOAT_BYTES = 4
# A CTC model's transcripts are in the language it was fine-tuned on, which its config does
# not record: ISO 639-2's "undetermined" unless the caller says which.
UNDETERMINED = "und"


class CtcTranscriber:
    """A transformers *ForCTC folder (config.json, model.safetensors, vocab.json and
    preprocessor_config.json) that turns speech into text with word times.

    `threads`: torch's CPU threads (process-wide, as for the transformers text backend).
    One transcription runs at a time; others wait their turn.
    """

    capabilities = frozenset({Capability.TRANSCRIBE})
    n_ctx = 0  # no text context: the window is audio

    def __init__(self, folder: Path, *, name: str = "", threads: int | None = None) -> None:
        self.name = name or folder.name
        config = _ctc_config(folder, self.name)
        import torch
        import transformers
        from transformers import AutoFeatureExtractor, AutoModelForCTC, Wav2Vec2CTCTokenizer

        if threads:
            torch.set_num_threads(threads)
        # Its progress bar on stderr would break into owl's own output (process-wide).
        transformers.utils.logging.disable_progress_bar()
        try:
            self._extractor: Any = AutoFeatureExtractor.from_pretrained(
                folder, local_files_only=True
            )
            self._tokenizer: Any = Wav2Vec2CTCTokenizer.from_pretrained(
                folder, local_files_only=True
            )
            self._model: Any = AutoModelForCTC.from_pretrained(
                folder, local_files_only=True, use_safetensors=True
            ).eval()
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            raise EngineError(
                f"transformers could not load '{self.name}' as a CTC speech model: {err}"
            ) from None
        self._torch = torch
        # Samples per output frame (320 for wav2vec 2.0: 20 ms): the product of the strides.
        self._frame_samples = int(np.prod(config.get("conv_stride") or [320]))
        weights = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
        self.memory_bytes = weights + _window_bytes(config, self._frame_samples)
        self._turns = Turns()
        self._closing = threading.Event()

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
        """The text of `audio` (16 kHz mono float32 samples, or a file's bytes or path),
        one segment per 30 s window that holds words, with word times when asked.

        `language` is recorded in the transcript (the model has only the one it was trained
        on). Raises InvalidParameter for a prompt, a temperature other than 0 or a task other
        than transcribe; InvalidAudio for audio that cannot be used; EngineError once the
        model is unloaded. `progress(seconds_done, duration)` after each window.
        """
        self._check_options(prompt, temperature, task)
        samples = samples_of(audio, max_seconds=max_seconds, max_bytes=max_bytes)
        with self._turns.turn():
            segments = self._segments(samples, word_timestamps, progress)
        return Transcript(
            text=" ".join(segment.text for segment in segments),
            language=(language or UNDETERMINED).strip().lower(),
            duration=len(samples) / SAMPLE_RATE,
            segments=tuple(segments),
        )

    def _check_options(self, prompt: str | None, temperature: float | None, task: str) -> None:
        if task == "translate":
            raise InvalidAudio(
                f"'{self.name}' is a CTC speech model and cannot translate; translate with "
                "a multilingual Whisper (owl pull hf:Systran/faster-whisper-small)"
            )
        if task != "transcribe":
            raise InvalidParameter(param="task", reason=f"{task!r} is not transcribe")
        if prompt:
            raise InvalidParameter(
                param="prompt",
                reason=f"'{self.name}' is a CTC model, which reads no prompt; leave it out "
                "or transcribe with a Whisper model",
            )
        if temperature is not None and not (math.isfinite(temperature) and temperature == 0):
            raise InvalidParameter(
                param="temperature",
                reason=f"'{self.name}' decodes greedily (a CTC model does not sample); use 0 "
                "or leave it out",
            )

    def _segments(
        self,
        samples: np.ndarray,
        word_timestamps: bool,
        progress: Callable[[float, float], None] | None,
    ) -> list[Segment]:
        duration = len(samples) / SAMPLE_RATE
        segments: list[Segment] = []
        for start in range(0, len(samples), WINDOW_SAMPLES):
            if self._closing.is_set() or self._model is None:
                raise EngineError(f"the transcription stopped: '{self.name}' is unloading")
            window = samples[start : start + WINDOW_SAMPLES]
            segment = self._segment(window, start / SAMPLE_RATE, len(segments), word_timestamps)
            if segment is not None:
                segments.append(segment)
            if progress is not None:
                progress(min(duration, (start + len(window)) / SAMPLE_RATE), duration)
        return segments

    def _segment(
        self, window: np.ndarray, offset: float, index: int, word_timestamps: bool
    ) -> Segment | None:
        torch = self._torch
        values = self._extractor(
            window, sampling_rate=SAMPLE_RATE, return_tensors="pt"
        ).input_values
        with torch.inference_mode():
            logits = self._model(values).logits[0]
        probabilities = torch.softmax(logits.float(), dim=-1).max(dim=-1)
        ids = probabilities.indices.tolist()
        decoded = self._tokenizer.decode(ids, output_word_offsets=word_timestamps)
        text = (decoded.text if word_timestamps else decoded).strip()
        if not text:
            return None
        frame = self._frame_samples / SAMPLE_RATE
        confidence = probabilities.values.numpy()
        words = ()
        if word_timestamps:
            words = tuple(
                Word(
                    start=round(offset + float(item["start_offset"]) * frame, 3),
                    end=round(offset + float(item["end_offset"]) * frame, 3),
                    word=" " + item["word"],
                    probability=float(confidence[item["start_offset"] : item["end_offset"]].mean()),
                )
                for item in decoded.word_offsets
            )
        return Segment(
            id=index,
            start=round(offset, 3),
            end=round(offset + len(window) / SAMPLE_RATE, 3),
            text=text,
            avg_logprob=float(np.log(np.maximum(confidence, 1e-12)).mean()),
            words=words,
        )

    def close(self, *, cancel: bool = False) -> None:
        """Free the model after the transcription under way (with `cancel`, at its next
        window, with EngineError)."""
        if cancel:
            self._closing.set()
        with self._turns.run:
            self._model = None


def _ctc_config(folder: Path, name: str) -> dict[str, Any]:
    """The folder's config.json, if it names a CTC model class."""
    config = read_folder_config(folder)
    model_class = model_class_of(config)
    if not (model_class and model_class.endswith("ForCTC")):
        raise WrongModelKind(
            f"'{name}' is not a speech-to-text model (its config.json names "
            f"{model_class or 'no model class'}, not a *ForCTC one); transcribe with a Whisper "
            "model (the built-in `whisper`) or a wav2vec 2.0 folder"
        )
    return config


def _window_bytes(config: dict[str, Any], frame_samples: int) -> int:
    """Activations of one 30 s window at their peak: the first convolution's output (its
    channels × samples / its stride, with the norm's copy) or the attention scores (heads ×
    frames², with the softmax's copy), whichever is larger."""
    conv_dim = config.get("conv_dim") or [512]
    first_stride = (config.get("conv_stride") or [5])[0]
    conv = 2 * conv_dim[0] * (WINDOW_SAMPLES // first_stride) * FLOAT_BYTES
    frames = WINDOW_SAMPLES // frame_samples
    attention = 2 * int(config.get("num_attention_heads") or 12) * frames * frames * FLOAT_BYTES
    return max(conv, attention)
