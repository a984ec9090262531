"""Text to speech with a Piper voice: espeak-ng's phonemes, the voice's ids, its VITS model
run with onnxruntime on the CPU, one sentence at a time (Piper's own way).

onnxruntime is imported when a PiperVoice is made: importing owl.engine loads no library.
The graph draws its noise itself, so the same text gives slightly different audio each time.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from owl.engine.backend import Capability, Occupancy
from owl.engine.piper.config import read_config, voice_files
from owl.engine.piper.phonemes import phoneme_ids, phonemize
from owl.engine.speech import Speech
from owl.engine.turns import Turns
from owl.errors import EngineError, InvalidAudio

# OpenAI's /v1/audio/speech range for `speed`.
MIN_SPEED, MAX_SPEED = 0.25, 4.0
# The pause put between sentences (Piper's default sentence_silence), shortened by speed.
SENTENCE_SILENCE_S = 0.2
# The model's working memory grows with the audio of one run (about 24 MB a second), so a
# long sentence is cut at a word into runs of at most this many phonemes at speed 1 (fewer
# when slower, as each phoneme lasts longer): some 15 s of audio per run at most.
PHONEMES_PER_RUN = 250
MIN_PHONEMES_PER_RUN = 40
# memory_bytes = the .onnx file × this. Measured on en_US-joe-medium (63 MB): the session
# adds about 1.5× the file, and speaking long sentences (runs at the limit above, at speed 1
# and 0.25) peaked at about 600 MB over the bare process: 10× with a little margin.
MEMORY_FACTOR = 10
REQUIRED_INPUTS = {"input", "input_lengths", "scales"}


class PiperVoice:
    """A Piper voice folder (`<name>.onnx` + `<name>.onnx.json`) loaded for speech.

    `threads`: onnxruntime's intra-op threads (default: every CPU). One synthesis runs at a
    time; others wait their turn.
    """

    capabilities = frozenset({Capability.SPEAK})
    n_ctx = 0  # no context window: text is spoken sentence by sentence

    def __init__(self, folder: Path, *, name: str = "", threads: int | None = None) -> None:
        import onnxruntime

        model, config_path = voice_files(folder)
        self.name = name or folder.name
        self.config = read_config(config_path)
        self.sample_rate = self.config.sample_rate
        self.memory_bytes = model.stat().st_size * MEMORY_FACTOR
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the voices' graphs warn about unused values
        try:
            self._session: Any = onnxruntime.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime's own exception types are not public API
            raise EngineError(f"onnxruntime cannot load the voice {model.name}: {err}") from None
        inputs = {value.name for value in self._session.get_inputs()}
        if not REQUIRED_INPUTS <= inputs or inputs - REQUIRED_INPUTS - {"sid"}:
            raise EngineError(
                f"{model.name} is not a Piper voice: its inputs are {sorted(inputs)}, "
                f"not {sorted(REQUIRED_INPUTS)} (and 'sid')"
            )
        self._speaker_input = "sid" in inputs
        self._turns = Turns()  # one synthesis at a time
        self._cancelled = False

    def occupancy(self) -> Occupancy:
        return self._turns.occupancy()

    def speak(self, text: str, *, speed: float = 1.0, max_chars: int = 4096) -> Speech:
        """`text` spoken by the voice: mono float32 samples in [-1, 1] at `sample_rate`.

        `speed` is OpenAI's (0.25–4.0, 1 the voice's own pace). Sentences are synthesised one
        by one and joined with SENTENCE_SILENCE_S of silence. Raises InvalidAudio for a speed
        out of range, a text that is empty, over `max_chars`, or has nothing to pronounce.
        """
        length_scale = self.config.length_scale / _checked_speed(speed)
        if not text.strip():
            raise InvalidAudio("nothing to say: the text is empty")
        if len(text) > max_chars:
            raise InvalidAudio(
                f"the text is {len(text)} characters, more than the {max_chars} spoken at "
                "once; split it"
            )
        with self._turns.waiting():
            runs = self._runs(phonemize(text, self.config.espeak_voice), length_scale)
            if not runs:
                raise InvalidAudio("nothing to say: the text has no words espeak-ng can pronounce")
            with self._turns.run:
                return self._synthesise(runs, length_scale, speed)

    def _runs(self, sentences: list[str], length_scale: float) -> list[list[list[int]]]:
        # Per sentence, the ids of each run of the model (more than one for a long sentence).
        limit = max(MIN_PHONEMES_PER_RUN, int(PHONEMES_PER_RUN / max(length_scale, 1.0)))
        id_map = self.config.phoneme_id_map
        runs = []
        for sentence in sentences:
            ids = [phoneme_ids(piece, id_map) for piece in _pieces(sentence, limit)]
            ids = [run for run in ids if len(run) > 3]  # more than BOS, pad and EOS
            if ids:
                runs.append(ids)
        return runs

    def _synthesise(self, runs: list[list[list[int]]], length_scale: float, speed: float) -> Speech:
        silence = np.zeros(round(self.sample_rate * SENTENCE_SILENCE_S / speed), np.float32)
        scales = np.array(
            [self.config.noise_scale, length_scale, self.config.noise_w], dtype=np.float32
        )
        parts: list[np.ndarray] = []
        for index, sentence in enumerate(runs):
            if index:
                parts.append(silence)
            for ids in sentence:
                parts.append(self._audio(ids, scales))
        samples = np.nan_to_num(np.concatenate(parts), nan=0.0, posinf=1.0, neginf=-1.0)
        return Speech(np.clip(samples, -1.0, 1.0).astype(np.float32), self.sample_rate)

    def _audio(self, ids: list[int], scales: np.ndarray) -> np.ndarray:
        if self._cancelled or self._session is None:
            raise EngineError(f"'{self.name}' was unloaded; load it again")
        feed = {
            "input": np.array([ids], dtype=np.int64),
            "input_lengths": np.array([len(ids)], dtype=np.int64),
            "scales": scales,
        }
        if self._speaker_input:
            feed["sid"] = np.array([0], dtype=np.int64)  # the first speaker of a multi-voice
        try:
            output = self._session.run(None, feed)[0]
        except Exception as err:  # onnxruntime's own exception types are not public API
            raise EngineError(f"'{self.name}' could not synthesise: {err}") from None
        return np.asarray(output, dtype=np.float32).reshape(-1)

    def close(self, *, cancel: bool = False) -> None:
        """Free the model; waits for the synthesis under way, or with `cancel` ends it after
        its current run (that speak call raises EngineError)."""
        if cancel:
            self._cancelled = True
        with self._turns.run:
            self._cancelled = True
            self._session = None


def _checked_speed(speed: float) -> float:
    valid = isinstance(speed, int | float) and not isinstance(speed, bool)
    if not valid or not math.isfinite(speed) or not MIN_SPEED <= speed <= MAX_SPEED:
        raise InvalidAudio(f"speed must be between {MIN_SPEED} and {MAX_SPEED}, not {speed!r}")
    return float(speed)


def _pieces(sentence: str, limit: int) -> list[str]:
    """The sentence cut at spaces into pieces of at most `limit` phonemes (a word longer
    than that is cut too: espeak-ng spells out a letter soup)."""
    pieces: list[str] = []
    current = ""
    words = sentence.split(" ")
    words = [word[i : i + limit] for word in words for i in range(0, max(len(word), 1), limit)]
    for word in words:
        if current and len(current) + 1 + len(word) > limit:
            pieces.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    if current:
        pieces.append(current)
    return pieces
