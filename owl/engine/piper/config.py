"""A Piper voice folder: its one `<name>.onnx` and `<name>.onnx.json`, and the config's fields
that owl uses, validated (a config is input from whoever published the voice: a field that is
missing or of the wrong type is a clear EngineError, never a KeyError or TypeError).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owl.engine.piper.phonemes import VOICE_NAME
from owl.errors import EngineError

MAX_CONFIG_BYTES = 4 * 1024 * 1024  # Piper's configs are a few KiB
MAX_SAMPLE_RATE = 192_000
# Piper's own defaults, for a config without an "inference" section.
DEFAULT_NOISE_SCALE = 0.667
DEFAULT_LENGTH_SCALE = 1.0
DEFAULT_NOISE_W = 0.8


@dataclass(frozen=True)
class VoiceConfig:
    """What a Piper config says about synthesis: rate, espeak-ng voice, ids, noise."""

    sample_rate: int
    espeak_voice: str
    phoneme_id_map: dict[str, tuple[int, ...]]
    noise_scale: float
    length_scale: float
    noise_w: float
    num_speakers: int


def voice_files(folder: Path) -> tuple[Path, Path]:
    """The folder's one model and its config: `<name>.onnx` and `<name>.onnx.json`."""
    if not folder.is_dir():
        raise EngineError(f"no Piper voice at {folder}: not a folder")
    models = sorted(path for path in folder.glob("*.onnx") if path.is_file())
    if len(models) != 1:
        found = ", ".join(path.name for path in models) or "none"
        raise EngineError(
            f"a Piper voice folder holds exactly one .onnx model; {folder} has {found}"
        )
    config = models[0].with_name(models[0].name + ".json")
    if not config.is_file():
        raise EngineError(f"the Piper voice {models[0].name} has no config {config.name} beside it")
    return models[0], config


def read_config(path: Path) -> VoiceConfig:
    """The voice's config, validated; EngineError names the field that is wrong."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_CONFIG_BYTES + 1)
    except OSError as err:
        raise EngineError(f"cannot read the voice config {path.name}: {err}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise EngineError(f"the voice config {path.name} is over {MAX_CONFIG_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise EngineError(f"the voice config {path.name} is not JSON: {err}") from None
    where = path.name
    data = _section(data, where, "the config")
    phoneme_type = data.get("phoneme_type", "espeak")
    if phoneme_type != "espeak":
        raise EngineError(
            f"{where}: phoneme_type {phoneme_type!r} is not supported; owl speaks espeak voices"
        )
    audio = _section(data.get("audio"), where, "audio")
    espeak = _section(data.get("espeak"), where, "espeak")
    inference = _section(data.get("inference", {}), where, "inference")
    return VoiceConfig(
        sample_rate=_integer(
            audio.get("sample_rate"), where, "audio.sample_rate", low=1, high=MAX_SAMPLE_RATE
        ),
        espeak_voice=_voice_name(espeak.get("voice"), where),
        phoneme_id_map=_id_map(data.get("phoneme_id_map"), where),
        noise_scale=_number(inference, "noise_scale", DEFAULT_NOISE_SCALE, where),
        length_scale=_number(inference, "length_scale", DEFAULT_LENGTH_SCALE, where, low=1e-3),
        noise_w=_number(inference, "noise_w", DEFAULT_NOISE_W, where),
        num_speakers=_integer(data.get("num_speakers", 1), where, "num_speakers", low=1),
    )


def _section(value: Any, where: str, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise EngineError(f"{where}: {name} must be a JSON object, not {_kind(value)}")
    return value


def _text(value: Any, where: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise EngineError(f"{where}: {name} must be a non-empty string, not {_kind(value)}")
    return value


def _voice_name(value: Any, where: str) -> str:
    # It becomes an argument of the espeak-ng program: a name, never an option.
    name = _text(value, where, "espeak.voice")
    if not VOICE_NAME.fullmatch(name):
        raise EngineError(f"{where}: espeak.voice {name[:40]!r} is not an espeak-ng voice name")
    return name


def _integer(value: Any, where: str, name: str, *, low: int, high: int | None = None) -> int:
    # bool is an int to Python, never to a config's author.
    if not isinstance(value, int) or isinstance(value, bool):
        raise EngineError(f"{where}: {name} must be an integer, not {_kind(value)}")
    if value < low or (high is not None and value > high):
        raise EngineError(f"{where}: {name} is {value}, outside {low}–{high or '…'}")
    return value


def _number(
    section: dict[str, Any], key: str, default: float, where: str, *, low: float = 0.0
) -> float:
    value = section.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise EngineError(f"{where}: inference.{key} must be a number, not {_kind(value)}")
    if not math.isfinite(value) or value < low or value > 100:
        raise EngineError(f"{where}: inference.{key} is {value}, outside {low}–100")
    return float(value)


def _id_map(value: Any, where: str) -> dict[str, tuple[int, ...]]:
    if not isinstance(value, dict) or not value:
        raise EngineError(f"{where}: phoneme_id_map must be a non-empty object, not {_kind(value)}")
    id_map: dict[str, tuple[int, ...]] = {}
    for phoneme, ids in value.items():
        valid = (
            isinstance(ids, list)
            and ids
            and all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**31 for i in ids)
        )
        if len(phoneme) != 1 or not valid:
            raise EngineError(
                f"{where}: phoneme_id_map maps one character to a list of ids; "
                f"{phoneme[:20]!r} -> {str(ids)[:40]} is not that"
            )
        id_map[phoneme] = tuple(ids)
    missing = [mark for mark in ("^", "$", "_") if mark not in id_map]
    if missing:
        raise EngineError(f"{where}: phoneme_id_map lacks {', '.join(map(repr, missing))}")
    return id_map


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__
