"""Voice folders and configs that are not what they should be: a clear EngineError each.

PiperVoice reads the config before it loads the model, so these tests load nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from owl.engine.piper import PiperVoice
from owl.engine.piper.config import MAX_CONFIG_BYTES, read_config
from owl.errors import EngineError

CONFIG = "en_US-joe-medium.onnx.json"


@pytest.fixture(scope="module")
def real_config(voice_folder: Path) -> dict[str, Any]:
    return json.loads((voice_folder / CONFIG).read_text())


def _folder(tmp_path: Path, config: object, *, model: bytes = b"not a model") -> Path:
    folder = tmp_path / "voice"
    folder.mkdir()
    (folder / "v.onnx").write_bytes(model)
    if isinstance(config, bytes | str):
        raw = config if isinstance(config, bytes) else config.encode()
    else:
        raw = json.dumps(config).encode()
    (folder / "v.onnx.json").write_bytes(raw)
    return folder


def test_the_real_config_reads(voice_folder: Path) -> None:
    config = read_config(voice_folder / CONFIG)
    assert config.sample_rate == 22050
    assert config.espeak_voice == "en-us"
    assert (config.noise_scale, config.length_scale, config.noise_w) == (0.667, 1.0, 0.8)
    assert config.phoneme_id_map["^"] == (1,)


def test_a_folder_without_a_voice(tmp_path: Path) -> None:
    (tmp_path / "README").write_text("no voice here")
    with pytest.raises(EngineError, match="exactly one .onnx"):
        PiperVoice(tmp_path)


def test_a_path_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="not a folder"):
        PiperVoice(tmp_path / "missing")


def test_two_models_in_one_folder(tmp_path: Path, real_config: dict[str, Any]) -> None:
    folder = _folder(tmp_path, real_config)
    (folder / "w.onnx").write_bytes(b"another")
    with pytest.raises(EngineError, match="v.onnx, w.onnx"):
        PiperVoice(folder)


def test_a_model_without_its_config(tmp_path: Path) -> None:
    (tmp_path / "v.onnx").write_bytes(b"x")
    (tmp_path / "other.onnx.json").write_text("{}")
    with pytest.raises(EngineError, match="no config v.onnx.json"):
        PiperVoice(tmp_path)


def _without(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda config: config.pop(key)


def _setting(path: str, value: object) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for parent in parents:
            config = config[parent]
        config[last] = value

    return change


HOSTILE = {
    "no phoneme_id_map": (_without("phoneme_id_map"), "phoneme_id_map"),
    "phoneme_id_map a list": (_setting("phoneme_id_map", [1, 2]), "phoneme_id_map"),
    "ids a string": (_setting("phoneme_id_map.a", "14"), "phoneme_id_map"),
    "ids booleans": (_setting("phoneme_id_map.a", [True]), "phoneme_id_map"),
    "ids negative": (_setting("phoneme_id_map.a", [-1]), "phoneme_id_map"),
    "ids empty": (_setting("phoneme_id_map.a", []), "phoneme_id_map"),
    "key of two characters": (_setting("phoneme_id_map.ab", [1]), "phoneme_id_map"),
    "no bos": (lambda config: config["phoneme_id_map"].pop("^"), "lacks '\\^'"),
    "no audio": (_without("audio"), "audio"),
    "sample rate a string": (_setting("audio.sample_rate", "22050"), "audio.sample_rate"),
    "sample rate a boolean": (_setting("audio.sample_rate", True), "audio.sample_rate"),
    "sample rate negative": (_setting("audio.sample_rate", -1), "audio.sample_rate"),
    "no espeak": (_without("espeak"), "espeak"),
    "espeak voice a number": (_setting("espeak.voice", 5), "espeak.voice"),
    "espeak voice an option": (_setting("espeak.voice", "--path=/tmp"), "espeak.voice"),
    "inference a list": (_setting("inference", [0.6]), "inference"),
    "noise a string": (_setting("inference.noise_scale", "loud"), "noise_scale"),
    "noise NaN": (_setting("inference.noise_w", float("nan")), "noise_w"),  # JSON's NaN
    "length scale zero": (_setting("inference.length_scale", 0), "length_scale"),
    "speakers zero": (_setting("num_speakers", 0), "num_speakers"),
    "text phonemes": (_setting("phoneme_type", "text"), "phoneme_type"),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_a_hostile_config_is_an_engine_error(
    case: str, tmp_path: Path, real_config: dict[str, Any]
) -> None:
    change, field = HOSTILE[case]
    config = json.loads(json.dumps(real_config))
    change(config)
    with pytest.raises(EngineError, match=field):
        PiperVoice(_folder(tmp_path, config))


@pytest.mark.parametrize(
    "text",
    ["[1, 2]", "not json", b'{"\xff": 1}', '{"a": ' * 100_000],
)
def test_a_config_that_is_not_an_object_or_not_json(tmp_path: Path, text: str | bytes) -> None:
    with pytest.raises(EngineError, match="v.onnx.json"):
        PiperVoice(_folder(tmp_path, text))


def test_a_config_too_large_is_refused_unread(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=str(MAX_CONFIG_BYTES)):
        PiperVoice(_folder(tmp_path, " " * (MAX_CONFIG_BYTES + 1)))


def test_a_model_onnxruntime_cannot_read(tmp_path: Path, real_config: dict[str, Any]) -> None:
    with pytest.raises(EngineError, match="onnxruntime cannot load the voice v.onnx"):
        PiperVoice(_folder(tmp_path, real_config))


def test_an_onnx_graph_that_is_not_a_piper_voice(
    tmp_path: Path, real_config: dict[str, Any]
) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder = _folder(tmp_path, real_config, model=model.SerializeToString())
    onnx.checker.check_model(model)
    with pytest.raises(EngineError, match="not a Piper voice"):
        PiperVoice(folder)
