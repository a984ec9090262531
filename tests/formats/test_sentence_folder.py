"""owl/formats/sentence_folder.py: a sentence-transformers folder's modules, pooling and
longest input read from its files, module configs found for `owl pull`, bad ones refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.errors import ModelFormatError
from owl.formats.hf_folder import list_folder
from owl.formats.sentence_folder import module_files, pooling_modes, read_layout
from owl.pull.folder import model_files

MODULES = [
    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    {
        "idx": 2,
        "name": "2",
        "path": "2_Normalize",
        "type": "sentence_transformers.models.Normalize",
    },
]


def write_folder(root: Path, modules: object = MODULES, pooling: object | None = None) -> Path:
    root.mkdir()
    (root / "config.json").write_text('{"architectures": ["BertModel"]}')
    (root / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    (root / "modules.json").write_text(json.dumps(modules))
    (root / "sentence_bert_config.json").write_text(
        '{"max_seq_length": 128, "do_lower_case": true}'
    )
    if pooling is not None:
        (root / "1_Pooling").mkdir()
        (root / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    return root


def files_of(folder: Path) -> dict[str, Path]:
    return {**list_folder(folder), **module_files(folder)}


def test_a_sentence_transformers_folder_reads_as_its_modules_say(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "st", pooling={"pooling_mode_mean_tokens": True})
    layout = read_layout(files_of(folder))
    assert layout is not None
    assert layout.kinds == ("Transformer", "Pooling", "Normalize")
    assert layout.pooling == ("mean",) and layout.normalize
    assert layout.max_seq_length == 128 and layout.lowercase


def test_pull_stores_the_module_configs_beside_the_top_level_files(tmp_path: Path) -> None:
    folder = write_folder(tmp_path / "st", pooling={"pooling_mode": "cls"})
    (folder / "1_Pooling" / "notes.bin").write_bytes(b"not json: not stored")
    assert module_files(folder) == {"1_Pooling/config.json": folder / "1_Pooling" / "config.json"}
    format, files = model_files(folder)
    assert format == "safetensors" and "1_Pooling/config.json" in files
    assert "1_Pooling/notes.bin" not in files


@pytest.mark.parametrize(
    ("config", "modes"),
    [
        ({"pooling_mode": "lasttoken"}, ("lasttoken",)),
        ({"pooling_mode": ["max", "cls"]}, ("max", "cls")),
        # The legacy flags concatenate in sentence-transformers' order, not the file's.
        ({"pooling_mode_mean_tokens": True, "pooling_mode_cls_token": True}, ("cls", "mean")),
        ({"pooling_mode_cls_token": False}, ("mean",)),  # none set: its default
        ({"pooling_mode_median_tokens": True}, ("pooling_mode_median_tokens",)),  # refused later
    ],
)
def test_pooling_modes_are_read_in_concatenation_order(config: dict, modes: tuple) -> None:
    assert pooling_modes(config) == modes


def test_folders_without_the_layout_or_with_a_broken_one(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "config.json").write_text("{}")
    assert read_layout(files_of(plain)) is None
    missing = write_folder(tmp_path / "missing")  # modules.json names 1_Pooling, not there
    with pytest.raises(ModelFormatError, match="1_Pooling/config.json is missing"):
        read_layout(files_of(missing))
    outside = write_folder(tmp_path / "outside", modules=[{"type": "Pooling", "path": "../up"}])
    with pytest.raises(ModelFormatError, match="not one plain folder name"):
        read_layout(files_of(outside))
    with pytest.raises(ModelFormatError, match="not a mode name"):
        pooling_modes({"pooling_mode": 3})
    listless = write_folder(tmp_path / "listless", modules={"type": "Pooling"})
    with pytest.raises(ModelFormatError, match="not a list of modules"):
        read_layout(files_of(listless))
