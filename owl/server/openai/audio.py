"""OpenAI's audio routes: /v1/audio/transcriptions, /v1/audio/translations, /v1/audio/speech.

Translations onto owl/server/speech.py, nothing more: the multipart fields and the JSON body
of OpenAI's API in, its response shapes out, so that the `openai` client's
audio.transcriptions.create, audio.translations.create and audio.speech.create work
unchanged. OpenAI's own model names (whisper-1, tts-1, …) mean owl's built-in models unless
a stored model has that name.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import PlainTextResponse, Response
from pydantic import Field

from owl.errors import InvalidAudio, InvalidModelName
from owl.server.body_checks import CheckedBody
from owl.server.speech import SpeakTask, TranscribeTask, speak, transcribe
from owl.store import parse_name

router = APIRouter(prefix="/v1/audio")

OPENAI_MODELS = {
    "whisper-1": "whisper",
    "gpt-4o-transcribe": "whisper",
    "gpt-4o-mini-transcribe": "whisper",
    "tts-1": "piper-joe",
    "tts-1-hd": "piper-joe",
    "gpt-4o-mini-tts": "piper-joe",
}
MEDIA_TYPES = {"mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac", "pcm": "audio/pcm"}
TranscriptFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]


def _owl_model(request: Request, name: str) -> str:
    """`name`, or the built-in model an OpenAI model name stands for."""
    mapped = OPENAI_MODELS.get(name.strip())
    if mapped is None:
        return name
    try:
        stored = request.app.state.pool.store.find(parse_name(name.strip()))
    except InvalidModelName:
        stored = None
    return name if stored is not None else mapped


async def _upload(file: UploadFile) -> bytes:
    data = await file.read()
    if not data:
        raise InvalidAudio("the uploaded 'file' is empty; send the audio file itself")
    return data


def _answer(transcript_text: str, response_format: str) -> Response:
    if response_format in ("json", "verbose_json"):
        return Response(transcript_text, media_type="application/json")
    return PlainTextResponse(transcript_text)


@router.post("/transcriptions")
async def transcriptions(
    request: Request,
    file: Annotated[UploadFile, File(description="The audio: wav, flac, mp3, ogg, webm, m4a.")],
    model: Annotated[str, Form()],
    language: Annotated[str | None, Form()] = None,
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[TranscriptFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0, le=1)] = None,
    timestamp_granularities: Annotated[
        list[Literal["word", "segment"]] | None, Form(alias="timestamp_granularities[]")
    ] = None,
) -> Response:
    words = "word" in (timestamp_granularities or [])
    if words and response_format != "verbose_json":
        raise InvalidAudio("word timestamps come with response_format 'verbose_json' only")
    transcript = await transcribe(
        request,
        TranscribeTask(
            model=_owl_model(request, model),
            audio=await _upload(file),
            language=language or None,
            prompt=prompt or None,
            temperature=temperature,
            word_timestamps=words,
        ),
    )
    return _answer(transcript.render(response_format), response_format)


@router.post("/translations")
async def translations(
    request: Request,
    file: Annotated[UploadFile, File(description="The audio, in any language Whisper knows.")],
    model: Annotated[str, Form()],
    prompt: Annotated[str | None, Form()] = None,
    response_format: Annotated[TranscriptFormat, Form()] = "json",
    temperature: Annotated[float | None, Form(ge=0, le=1)] = None,
) -> Response:
    transcript = await transcribe(
        request,
        TranscribeTask(
            model=_owl_model(request, model),
            audio=await _upload(file),
            prompt=prompt or None,
            temperature=temperature,
            task="translate",
        ),
    )
    return _answer(transcript.render(response_format), response_format)


class SpeechRequest(CheckedBody):
    model: str
    input: str = Field(min_length=1)
    voice: str | None = None  # OpenAI's voice names are accepted; the model is the voice
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)
    instructions: str | None = None  # gpt-4o-mini-tts's style prompt: a Piper voice has none
    stream_format: Literal["audio", "sse"] | None = None


@router.post("/speech", response_model=None)
async def speech(body: SpeechRequest, request: Request) -> Response:
    if body.response_format not in MEDIA_TYPES:
        raise InvalidAudio(
            f"owl encodes speech as {', '.join(MEDIA_TYPES)}, not {body.response_format}; "
            "ask for one of those"
        )
    if body.stream_format == "sse":
        raise InvalidAudio("stream_format 'sse' is not supported; leave it out for the audio")
    spoken = await speak(
        request, SpeakTask(model=_owl_model(request, body.model), text=body.input, speed=body.speed)
    )
    audio = spoken.encode(body.response_format)
    return Response(audio, media_type=MEDIA_TYPES[body.response_format])
