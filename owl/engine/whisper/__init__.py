"""Whisper speech to text on CTranslate2, through faster-whisper (transcriber.py)."""

from owl.engine.whisper.transcriber import WhisperTranscriber

__all__ = ["WhisperTranscriber"]
