"""Speech, as every API asks for it: transcribe (speech to text) and speak (text to speech).

OpenAI's /v1/audio/* routes translate onto these (owl/server/openai/audio.py). The models
come from the server's one pool, under the same memory budget and keep_alive as every other
loaded model; the work runs in a worker thread, one request at a time per model.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from owl.config import Settings
from owl.engine.speech import Speech, Transcript
from owl.errors import InvalidAudio
from owl.server.pool import ModelPool

MAX_SPEECH_CHARS = 4096  # OpenAI's limit on /v1/audio/speech input


@dataclass(frozen=True, kw_only=True)
class TranscribeTask:
    """The bytes of an uploaded audio file to turn into text with `model`."""

    model: str
    audio: bytes
    language: str | None = None
    prompt: str | None = None
    temperature: float | None = None
    task: str = "transcribe"  # or translate (to English)
    word_timestamps: bool = False


@dataclass(frozen=True, kw_only=True)
class SpeakTask:
    """Text to say with the voice `model`."""

    model: str
    text: str
    speed: float = 1.0


async def transcribe(request: Request, task: TranscribeTask) -> Transcript:
    """The transcript of `task`'s audio; InvalidAudio (400) for bytes that are not audio."""
    settings: Settings = request.app.state.settings
    if not task.audio:
        raise InvalidAudio("the uploaded file is empty; send an audio file in the 'file' field")
    pool: ModelPool = request.app.state.pool
    transcriber = await pool.transcriber(task.model)
    work = partial(
        transcriber.transcribe,
        task.audio,
        language=task.language,
        prompt=task.prompt,
        temperature=task.temperature,
        task=task.task,
        word_timestamps=task.word_timestamps,
        max_seconds=settings.max_audio_seconds,
        max_bytes=settings.max_audio_bytes,
    )
    return await run_in_threadpool(work)


async def speak(request: Request, task: SpeakTask) -> Speech:
    """`task`'s text, spoken; InvalidAudio for text that cannot be (empty, too long)."""
    if len(task.text) > MAX_SPEECH_CHARS:
        raise InvalidAudio(
            f"'input' is {len(task.text)} characters; send at most {MAX_SPEECH_CHARS} per request"
        )
    pool: ModelPool = request.app.state.pool
    voice = await pool.voice(task.model)
    return await run_in_threadpool(partial(voice.speak, task.text, speed=task.speed))
