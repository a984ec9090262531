"""Piper voices (VITS models in ONNX) for text to speech, run with onnxruntime; phonemes
from the espeak-ng program."""

from owl.engine.piper.phonemes import phoneme_ids, phonemize
from owl.engine.piper.voice import PiperVoice

__all__ = ["PiperVoice", "phoneme_ids", "phonemize"]
