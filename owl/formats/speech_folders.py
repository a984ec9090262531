"""Speech model folders → ModelInfo: a CTranslate2 Whisper folder (what faster-whisper runs)
and a Piper voice (VOICE.onnx with its VOICE.onnx.json).

Like Hugging Face folders, they are read from a mapping of file name → path (a folder where
it is, or a stored model's blobs), every JSON file with a size bound. Only headers and
configs are read: the weights are checked by owl.scan, by content.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from owl.errors import ModelFormatError
from owl.formats.ctranslate2 import read_layout
from owl.formats.hf_folder import CONFIG, read_json
from owl.formats.info import ModelInfo

CT2_WEIGHTS = "model.bin"
VOICE_SUFFIX = ".onnx"
VOICE_CONFIG_SUFFIX = ".onnx.json"
# Whisper's multilingual vocabularies have 51865 tokens or more; the English-only ones fewer.
MULTILINGUAL_VOCAB = 51865


def voice_files(files: Mapping[str, Path]) -> tuple[str, str] | None:
    """The (VOICE.onnx, VOICE.onnx.json) pair of a Piper voice folder, if it has one."""
    voices = [name for name in files if name.endswith(VOICE_SUFFIX)]
    pairs = [(name, name + ".json") for name in voices if name + ".json" in files]
    if len(voices) > 1:
        raise ModelFormatError(
            f"the folder has {len(voices)} .onnx files ({', '.join(sorted(voices)[:4])}); "
            "a voice folder holds one: pull each voice on its own"
        )
    return pairs[0] if pairs else None


def read_whisper_files(files: Mapping[str, Path], *, where: str) -> ModelInfo:
    """The facts of a CTranslate2 folder (model.bin, config.json, vocabulary, tokenizer)."""
    if CT2_WEIGHTS not in files:
        raise ModelFormatError(f"{where} has no {CT2_WEIGHTS}: not a CTranslate2 model folder")
    layout = read_layout(files[CT2_WEIGHTS])
    config = read_json(files[CONFIG], name=CONFIG) if CONFIG in files else {}
    if not isinstance(config, dict):
        raise ModelFormatError(f"{CONFIG} of {where} is not a JSON object")
    vocabulary = _vocabulary_size(files)
    types = Counter(variable.dtype for variable in layout.variables)
    weights = {dtype: 0 for dtype in types}
    for variable in layout.variables:
        weights[variable.dtype] += variable.size
    main = max(weights, key=weights.__getitem__) if weights else None
    architecture = layout.spec.removesuffix("Spec").lower() or None
    metadata: dict[str, Any] = {"ct2.spec": layout.spec, "ct2.revision": layout.revision}
    if architecture == "whisper" and vocabulary:
        metadata["whisper.multilingual"] = vocabulary >= MULTILINGUAL_VOCAB
    return ModelInfo(
        format="ctranslate2",
        architecture=architecture,
        parameters=sum(_elements(variable.shape) for variable in layout.variables),
        quantization=main,
        tensor_types=dict(types),
        vocab_size=vocabulary,
        metadata=metadata,
    )


def read_voice_files(files: Mapping[str, Path], *, where: str) -> ModelInfo:
    """The facts of a Piper voice: its language, sample rate, speakers, quality."""
    pair = voice_files(files)
    if pair is None:
        raise ModelFormatError(f"{where} has no VOICE.onnx with its VOICE.onnx.json")
    model, config_name = pair
    config = read_json(files[config_name], name=config_name)
    if not isinstance(config, dict):
        raise ModelFormatError(f"{config_name} is not a JSON object")
    audio = _mapping(config.get("audio"))
    language = _mapping(config.get("language"))
    espeak = _mapping(config.get("espeak"))
    ids = config.get("phoneme_id_map")
    if not isinstance(ids, dict) or not ids:
        raise ModelFormatError(f"{config_name} has no phoneme_id_map: it is not a Piper voice")
    metadata: dict[str, Any] = {"voice.file": model}
    for key, value in (
        ("voice.sample_rate", audio.get("sample_rate")),
        ("voice.quality", audio.get("quality")),
        ("voice.language", language.get("code")),
        ("voice.espeak", espeak.get("voice")),
        ("voice.speakers", config.get("num_speakers")),
        ("voice.phoneme_type", config.get("phoneme_type")),
    ):
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            metadata[key] = value if isinstance(value, int) else value[:64]
    return ModelInfo(
        format="onnx",
        architecture="piper",
        name=model.removesuffix(VOICE_SUFFIX),
        vocab_size=len(ids),
        metadata=metadata,
    )


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _elements(shape: tuple[int, ...]) -> int:
    count = 1
    for dimension in shape:
        count *= dimension
    return count


def _vocabulary_size(files: Mapping[str, Path]) -> int | None:
    for name in ("vocabulary.txt", "vocabulary.json"):
        if name in files:
            with files[name].open("rb") as handle:
                if name.endswith(".txt"):
                    return sum(1 for _ in handle)
            vocabulary = read_json(files[name], name=name)
            return len(vocabulary) if isinstance(vocabulary, list) else None
    return None
