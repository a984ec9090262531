"""owl transcribe | speak: speech to text with a Whisper model, text to speech with a voice."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from owl import engine
from owl.config import load_settings
from owl.engine.backend import Transcriber, Voice
from owl.engine.speech import SPEECH_FORMATS, TRANSCRIPT_FORMATS, Transcript
from owl.errors import InvalidAudio
from owl.pull import open_store, resolve

errors = Console(stderr=True)
ALLOW_UNSAFE = Annotated[
    bool, typer.Option("--allow-unsafe", help="Load it even though its scan verdict is not clean.")
]


def _loaded(
    name: str, capability: engine.Capability, *, allow_unsafe: bool, by: str
) -> engine.Loaded:
    """The model `name` (pulled if it is a built-in or catalog name) loaded for `capability`."""
    config = load_settings()
    store = open_store(config)
    manifest = resolve(name, store=store, settings=config, pull_missing=True)
    return engine.load(
        manifest,
        store=store,
        settings=config,
        capability=capability,
        allow_unsafe=allow_unsafe,
        by=f"{by} --allow-unsafe",
    )


def transcribe_command(
    audio: Annotated[list[Path], typer.Argument(help="Audio files: wav, flac, mp3, ogg, …")],
    model: Annotated[str, typer.Option("--model", "-m", help="A Whisper model.")] = "whisper",
    language: Annotated[
        str | None,
        typer.Option("--language", help="The spoken language, e.g. en (default: detect)."),
    ] = None,
    translate: Annotated[
        bool, typer.Option("--translate", help="Translate to English (multilingual models).")
    ] = False,
    output_format: Annotated[
        str, typer.Option("--format", help="text | json | srt | vtt | verbose_json")
    ] = "text",
    json_output: Annotated[
        bool, typer.Option("--json", help="Text, language, duration and timed segments.")
    ] = False,
    prompt: Annotated[
        str | None, typer.Option("--prompt", help="Words to expect (names, spellings).")
    ] = None,
    allow_unsafe: ALLOW_UNSAFE = False,
) -> None:
    """Print the transcript of each AUDIO file (Whisper, offline)."""
    chosen = "verbose_json" if json_output else output_format
    if chosen not in TRANSCRIPT_FORMATS:
        raise typer.BadParameter(f"--format is one of {', '.join(TRANSCRIPT_FORMATS)}")
    for path in audio:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a file")
    loaded: Transcriber = _loaded(  # type: ignore[assignment]  (asked for TRANSCRIBE)
        model, engine.Capability.TRANSCRIBE, allow_unsafe=allow_unsafe, by="owl transcribe"
    )
    try:
        for path in audio:
            transcript = _transcribe(
                loaded, path, language=language, prompt=prompt, translate=translate
            )
            if len(audio) > 1 and chosen == "text":
                print(f"# {path}")
            sys.stdout.write(_rendered(transcript, chosen))
            sys.stdout.flush()
    finally:
        loaded.close()


def _transcribe(
    loaded: Transcriber, path: Path, *, language: str | None, prompt: str | None, translate: bool
) -> Transcript:
    with Progress(
        TextColumn(f"[bold]transcribing[/bold] {path.name}"),
        BarColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
    ) as bar:
        task = bar.add_task("transcribe", total=None)

        def progress(done: float, duration: float) -> None:
            bar.update(task, completed=done, total=duration)

        return loaded.transcribe(
            path,
            language=language,
            prompt=prompt,
            task="translate" if translate else "transcribe",
            progress=progress,
        )


def _rendered(transcript: Transcript, response_format: str) -> str:
    if response_format in ("json", "verbose_json"):
        return json.dumps(json.loads(transcript.render(response_format)), indent=2) + "\n"
    text = transcript.render(response_format)
    return text if text.endswith("\n") else text + "\n"


def speak_command(
    text: Annotated[str, typer.Argument(help="What to say; - reads it from stdin.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The audio file to write.")],
    voice: Annotated[str, typer.Option("--voice", help="A Piper voice.")] = "piper-joe",
    speed: Annotated[
        float, typer.Option("--speed", help="0.25 to 4.0; 1 is the voice's own.")
    ] = 1.0,
    output_format: Annotated[
        str | None, typer.Option("--format", help="wav | pcm | flac | mp3 (default: by suffix)")
    ] = None,
    allow_unsafe: ALLOW_UNSAFE = False,
) -> None:
    """Say TEXT with a voice (Piper, offline) into an audio file."""
    chosen = output_format or (output.suffix.lstrip(".").lower() or "wav")
    if chosen not in SPEECH_FORMATS:
        raise typer.BadParameter(
            f"cannot write {chosen!r} audio: name the file .wav, .flac, .mp3 or .pcm, or pass "
            "--format"
        )
    words = sys.stdin.read() if text == "-" else text
    loaded: Voice = _loaded(  # type: ignore[assignment]  (asked for SPEAK)
        voice, engine.Capability.SPEAK, allow_unsafe=allow_unsafe, by="owl speak"
    )
    try:
        speech = loaded.speak(words, speed=speed)
    finally:
        loaded.close()
    try:
        output.write_bytes(speech.encode(chosen))
    except OSError as err:
        raise InvalidAudio(f"cannot write {output}: {err.strerror}") from None
    errors.print(f"wrote {output} ({speech.duration:.1f} s of speech)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("transcribe")(transcribe_command)
    app.command("speak")(speak_command)
