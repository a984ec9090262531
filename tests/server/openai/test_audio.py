"""OpenAI's audio API against a real `owl serve`, with the real `openai` client: the
embedded Whisper transcribes speech made by espeak-ng and by owl's own Piper voice; every
malformed upload is a 400 that says what is wrong, never a 500."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

import httpx
import openai
import pytest

from owl.engine.audio import decode_audio
from tests.server.conftest import Server
from tests.support.cli import owl
from tests.support.speech_files import SENTENCES, share_heard, spoken
from tests.support.tiny_wav2vec2 import build_tiny_wav2vec2, reference_transcript

SENTENCE = SENTENCES[0]


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return spoken(SENTENCE, tmp_path_factory.mktemp("speech") / "sentence.wav")


@pytest.mark.parametrize("model", ["whisper", "whisper-1"])
def test_transcription_with_the_openai_client(
    client: openai.OpenAI, speech_wav: Path, model: str
) -> None:
    with speech_wav.open("rb") as audio:
        result = client.audio.transcriptions.create(model=model, file=audio)
    assert share_heard(SENTENCE, result.text) >= 0.7, result.text


def test_verbose_json_with_word_timestamps(client: openai.OpenAI, speech_wav: Path) -> None:
    with speech_wav.open("rb") as audio:
        result = client.audio.transcriptions.create(
            model="whisper", file=audio, response_format="verbose_json",
            timestamp_granularities=["word"],
        )  # fmt: skip
    assert result.language == "en" and 0 < result.duration < 30
    assert result.words and all(w.start <= w.end <= result.duration for w in result.words)
    assert result.segments and result.segments[0].start >= 0


@pytest.mark.parametrize(("response_format", "starts"), [("srt", "1\n00:00:0"), ("vtt", "WEBVTT")])
def test_subtitle_formats(
    http: httpx.Client, speech_wav: Path, response_format: str, starts: str
) -> None:
    answer = http.post(
        "/v1/audio/transcriptions",
        files={"file": ("s.wav", speech_wav.read_bytes(), "audio/wav")},
        data={"model": "whisper", "response_format": response_format},
    )
    assert answer.status_code == 200 and answer.text.startswith(starts)
    assert answer.headers["content-type"].startswith("text/plain")


def test_speech_with_the_openai_client_then_back_to_text(client: openai.OpenAI) -> None:
    said = "The library opens at nine in the morning."
    audio = client.audio.speech.create(
        model="tts-1", voice="alloy", input=said, response_format="wav"
    )
    with wave.open(io.BytesIO(audio.content)) as read:
        assert read.getframerate() == 22050 and read.getnframes() > 22050  # over a second
    heard = client.audio.transcriptions.create(model="whisper", file=("said.wav", audio.content))
    assert share_heard(said, heard.text) >= 0.6, heard.text


@pytest.mark.parametrize(
    ("response_format", "media"),
    [("mp3", "audio/mpeg"), ("flac", "audio/flac"), ("pcm", "audio/pcm")],
)
def test_speech_formats(http: httpx.Client, response_format: str, media: str) -> None:
    answer = http.post(
        "/v1/audio/speech",
        json={
            "model": "piper-joe",
            "input": "Hello.",
            "voice": "alloy",
            "response_format": response_format,
        },
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == media
    assert len(answer.content) > 1000


W = {"model": "whisper"}
RIFF = {"file": ("x.wav", b"RIFF")}
BAD_UPLOADS = {
    "not-audio": ({"file": ("x.wav", b"this is not audio at all" * 40)}, W, "not audio"),
    "empty": ({"file": ("x.wav", b"")}, W, "empty"),
    "png": ({"file": ("x.png", b"\x89PNG\r\n\x1a\n" + bytes(200))}, W, "not audio"),
    "no-file": (None, W, "file"),
    "no-model": (RIFF, {}, "model"),
    "bad-format": (RIFF, {**W, "response_format": "docx"}, "response_format"),
    "a-text-model": (RIFF, {"model": "smollm2"}, "not a speech-to-text"),
    "no-such-model": (RIFF, {"model": "nope"}, "nope"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_UPLOADS))
def test_bad_uploads_are_400s_that_say_why(http: httpx.Client, case: str) -> None:
    files, data, words = BAD_UPLOADS[case]
    answer = http.post("/v1/audio/transcriptions", files=files, data=data)
    assert answer.status_code in (400, 404, 422), answer.text
    assert answer.status_code < 500
    assert words in json.loads(answer.text)["error"]["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"model": "piper-joe", "input": ""}, "input"),
        ({"model": "piper-joe", "input": "x" * 5000}, "4096"),
        ({"model": "piper-joe", "input": "Hi", "speed": 9}, "speed"),
        ({"model": "piper-joe", "input": "Hi", "response_format": "opus"}, "opus"),
        ({"model": "whisper", "input": "Hi"}, "not a voice"),
    ],
)
def test_bad_speech_requests_are_400s(http: httpx.Client, body: dict, words: str) -> None:
    answer = http.post("/v1/audio/speech", json=body)
    assert 400 <= answer.status_code < 500, answer.text
    assert words in answer.json()["error"]["message"]


def test_translation_on_an_english_only_model_says_so(
    client: openai.OpenAI, speech_wav: Path
) -> None:
    with (
        pytest.raises(openai.BadRequestError, match="English-only"),
        speech_wav.open("rb") as audio,
    ):
        client.audio.translations.create(model="whisper", file=audio)


@pytest.fixture(scope="module")
def wav2vec2(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny wav2vec 2.0 folder, pulled into the running server's store as `w2v`."""
    folder = build_tiny_wav2vec2(tmp_path_factory.mktemp("w2v") / "tiny-wav2vec2")
    pulled = owl(server.home, "pull", str(folder), "--name", "w2v")
    assert pulled.returncode == 0, pulled.stderr
    return folder


def test_wav2vec2_transcribes_through_the_openai_client(
    client: openai.OpenAI, wav2vec2: Path, speech_wav: Path
) -> None:
    samples = decode_audio(speech_wav, max_seconds=60, max_bytes=10 << 20)
    with speech_wav.open("rb") as audio:
        result = client.audio.transcriptions.create(
            model="w2v", file=audio, response_format="verbose_json",
            timestamp_granularities=["word"],
        )  # fmt: skip
    assert result.text == reference_transcript(wav2vec2, samples).strip()
    assert result.words and all(w.start < w.end <= result.duration for w in result.words)


def test_wav2vec2_refuses_a_prompt_with_a_400(client: openai.OpenAI, wav2vec2: Path) -> None:
    with pytest.raises(openai.BadRequestError, match="reads no prompt"):
        client.audio.transcriptions.create(model="w2v", file=("s.wav", b"RIFF"), prompt="x")
