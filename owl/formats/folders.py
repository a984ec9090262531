"""Model folders by layout: which format a folder of files is, its checks, and its facts.

Three layouts, told apart by their files (and model.bin by its content, since a pickle can
have the same name):
- a Hugging Face folder, format "safetensors": config.json and *.safetensors weights;
- a CTranslate2 folder, format "ctranslate2": model.bin in CTranslate2's layout (Whisper);
- a Piper voice, format "onnx": one VOICE.onnx with its VOICE.onnx.json.
Every function works on a mapping of file name → path, a folder where it is or a stored
model's blobs alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from owl.errors import ModelFormatError
from owl.formats.ctranslate2 import looks_like_ctranslate2
from owl.formats.hf_folder import check_no_remote_code, check_weights, file_role, read_hf_files
from owl.formats.info import ModelInfo
from owl.formats.speech_folders import (
    CT2_WEIGHTS,
    VOICE_CONFIG_SUFFIX,
    VOICE_SUFFIX,
    read_voice_files,
    read_whisper_files,
    voice_files,
)

FOLDER_FORMATS = ("safetensors", "ctranslate2", "onnx")
_CT2_ROLES = {"vocabulary.txt": "tokenizer", "vocabulary.json": "tokenizer"}


def folder_format(files: Mapping[str, Path], *, where: str) -> str:
    """The format of the model folder `files`; ModelFormatError naming the layouts owl knows."""
    if voice_files(files) is not None:
        return "onnx"
    if CT2_WEIGHTS in files:
        with files[CT2_WEIGHTS].open("rb") as handle:
            if looks_like_ctranslate2(handle.read(64)):
                return "ctranslate2"
    if any(name.endswith(".safetensors") for name in files) or "config.json" in files:
        return "safetensors"
    raise ModelFormatError(
        f"{where} is not a model folder owl knows: a Hugging Face folder (config.json and "
        "*.safetensors), a CTranslate2 folder (model.bin and config.json, e.g. "
        "Systran/faster-whisper-*) or a Piper voice (VOICE.onnx and VOICE.onnx.json)"
    )


def check_folder(files: Mapping[str, Path], *, format: str, where: str) -> None:
    """The checks a folder passes before anything is copied, and again on the stored bytes:
    its weights are there, and it asks no loader to import code of its own."""
    check_no_remote_code(files)
    if format == "safetensors":
        check_weights(files, where=where)
    elif format == "ctranslate2" and CT2_WEIGHTS not in files:
        raise ModelFormatError(f"{where} has no {CT2_WEIGHTS}")
    elif format == "onnx" and voice_files(files) is None:
        raise ModelFormatError(f"{where} has no VOICE.onnx with its VOICE.onnx.json")


def read_folder(files: Mapping[str, Path], *, format: str, where: str) -> ModelInfo:
    """The ModelInfo of a model folder of `format` (FOLDER_FORMATS)."""
    if format == "ctranslate2":
        return read_whisper_files(files, where=where)
    if format == "onnx":
        return read_voice_files(files, where=where)
    return read_hf_files(files, where=where)


def folder_role(name: str, *, format: str) -> str:
    """A file's role in a folder of `format`: model, config, tokenizer, card, other."""
    if format == "ctranslate2":
        if name == CT2_WEIGHTS:
            return "model"
        if name in _CT2_ROLES:
            return _CT2_ROLES[name]
    if format == "onnx":
        if name.endswith(VOICE_SUFFIX):
            return "model"
        if name.endswith(VOICE_CONFIG_SUFFIX):
            return "config"
    return file_role(name)
