"""Model folders by layout: which format a folder of files is, its checks, and its facts.

Four layouts, told apart by their files (and model.bin by its content, since a pickle can
have the same name):
- a diffusers pipeline, format "diffusers": model_index.json and a sub-folder per component
  (owl.formats.diffusers), its files named by relative paths ("unet/config.json");
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
from owl.formats.diffusers import INDEX as DIFFUSERS_INDEX
from owl.formats.diffusers import check_files as check_diffusers
from owl.formats.diffusers import diffusers_role
from owl.formats.diffusers import read_files as read_diffusers
from owl.formats.hf_folder import (
    check_no_remote_code,
    check_weights,
    file_role,
    is_plain_filename,
    read_hf_files,
)
from owl.formats.info import ModelInfo
from owl.formats.speech_folders import (
    CT2_WEIGHTS,
    VOICE_CONFIG_SUFFIX,
    VOICE_SUFFIX,
    read_voice_files,
    read_whisper_files,
    voice_files,
)

FOLDER_FORMATS = ("safetensors", "ctranslate2", "onnx", "diffusers")
# A file of a model folder is named by its path in it: a plain name, or one sub-folder deep
# (a diffusers component's "unet/config.json"); never absolute, never '..'.
MAX_PATH_PARTS = 2
_CT2_ROLES = {"vocabulary.txt": "tokenizer", "vocabulary.json": "tokenizer"}


def is_model_path(name: str) -> bool:
    """Whether `name` may name a file of a model folder: plain names joined by '/', at most
    MAX_PATH_PARTS of them (names become paths in the store's snapshot folders)."""
    if not isinstance(name, str):
        return False
    parts = name.split("/")
    return len(parts) <= MAX_PATH_PARTS and all(is_plain_filename(part) for part in parts)


def folder_format(files: Mapping[str, Path], *, where: str) -> str:
    """The format of the model folder `files`; ModelFormatError naming the layouts owl knows."""
    if DIFFUSERS_INDEX in files:
        return "diffusers"
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
        "Systran/faster-whisper-*), a Piper voice (VOICE.onnx and VOICE.onnx.json) or a "
        "diffusers pipeline (model_index.json)"
    )


def check_folder(files: Mapping[str, Path], *, format: str, where: str) -> None:
    """The checks a folder passes before anything is copied, and again on the stored bytes:
    its weights are there, and it asks no loader to import code of its own."""
    if format == "diffusers":
        check_diffusers(files, where=where)
        return
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
    if format == "diffusers":
        return read_diffusers(files, where=where)
    return read_hf_files(files, where=where)


def folder_role(name: str, *, format: str) -> str:
    """A file's role in a folder of `format`: model, config, tokenizer, card, other."""
    if format == "diffusers":
        return diffusers_role(name)
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
