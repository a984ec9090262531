"""Reading Hugging Face model folders: config, safetensors headers (sharded), template, license.

The folders here are written by hand (safetensors bytes by owl's test, checked against the
real `safetensors` reader), so that each case is exactly the one under test.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

import numpy as np
import pytest

from owl.errors import ModelFormatError, UnsafeModel
from owl.formats import detect, inspect
from owl.formats.hf_folder import (
    check_no_remote_code,
    file_role,
    is_plain_filename,
    list_folder,
    read_hf_folder,
)

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 8,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "vocab_size": 16,
    "max_position_embeddings": 512,
    "torch_dtype": "bfloat16",
}
CARD = "---\nlicense: mit\n---\n# a hand-made model\n"
TEMPLATE = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
_DTYPES = {"F32": np.float32, "BF16": np.uint16, "F16": np.float16, "I64": np.int64}


def safetensors_bytes(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """A valid safetensors file of zero-filled tensors {name: (dtype, shape)}."""
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape) in tensors.items():
        size = math.prod(shape) * np.dtype(_DTYPES[dtype]).itemsize
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        blobs.append(bytes(size))
        offset += size
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + b"".join(blobs)


SHARD_1 = {"embed.weight": ("BF16", [16, 8]), "layers.0.weight": ("BF16", [8, 8])}
SHARD_2 = {"layers.1.weight": ("BF16", [8, 8]), "norm.weight": ("F32", [8])}


def write_folder(folder: Path, **files: bytes | str | dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        if isinstance(content, dict):
            content = json.dumps(content)
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


def sharded(folder: Path, **extra: bytes | str | dict) -> Path:
    weight_map = {name: "model-00001-of-00002.safetensors" for name in SHARD_1}
    weight_map |= {name: "model-00002-of-00002.safetensors" for name in SHARD_2}
    return write_folder(
        folder,
        **{
            "config.json": CONFIG,
            "model-00001-of-00002.safetensors": safetensors_bytes(SHARD_1),
            "model-00002-of-00002.safetensors": safetensors_bytes(SHARD_2),
            "model.safetensors.index.json": {"metadata": {}, "weight_map": weight_map},
            "tokenizer_config.json": {"chat_template": TEMPLATE, "model_max_length": 2048},
            "README.md": CARD,
            **extra,
        },
    )


def test_a_sharded_folder_reads_into_one_model_info(tmp_path: Path) -> None:
    folder = sharded(tmp_path / "m")
    info = read_hf_folder(folder)
    assert info.format == "safetensors"
    assert info.architecture == "llama"
    assert info.metadata["hf.architecture"] == "LlamaForCausalLM"
    assert info.metadata["hf.weight_files"] == 2
    assert info.metadata["hf.dtype"] == "bfloat16"
    # Every tensor of both shards, counted element by element.
    expected = sum(math.prod(shape) for _, shape in {**SHARD_1, **SHARD_2}.values())
    assert info.parameters == expected == 16 * 8 + 2 * 64 + 8
    assert info.tensor_types == {"BF16": 3, "F32": 1}
    assert info.quantization == "BF16"  # the type that holds most of the weights
    assert info.context_length == 512  # the config's, not the tokenizer's model_max_length
    assert (info.embedding_length, info.block_count, info.head_count) == (8, 2, 2)
    assert info.vocab_size == 16
    assert info.chat_template == TEMPLATE
    assert info.license == "mit"
    assert detect(folder) == "hf-folder"
    assert inspect(folder) == info


def test_the_counts_agree_with_the_safetensors_reader(tmp_path: Path) -> None:
    from safetensors import safe_open

    folder = sharded(tmp_path / "m")
    total = 0
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), framework="numpy") as handle:
            total += sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())  # noqa: SIM118
    assert read_hf_folder(folder).parameters == total


def test_chat_template_jinja_wins_and_text_config_holds_the_sizes(tmp_path: Path) -> None:
    config = {
        "architectures": ["Gemma3ForConditionalGeneration"],
        "model_type": "gemma3",
        "text_config": {"hidden_size": 32, "num_hidden_layers": 3, "max_position_embeddings": 99},
    }
    folder = write_folder(
        tmp_path / "m",
        **{
            "config.json": config,
            "model.safetensors": safetensors_bytes({"w": ("F16", [4, 4])}),
            "chat_template.jinja": "from the jinja file",
            "tokenizer_config.json": {"chat_template": "from tokenizer_config"},
        },
    )
    info = read_hf_folder(folder)
    assert info.chat_template == "from the jinja file"
    assert (info.embedding_length, info.block_count, info.context_length) == (32, 3, 99)
    assert info.license is None
    assert info.quantization == "F16"


def test_a_quantized_checkpoint_says_its_method(tmp_path: Path) -> None:
    config = {**CONFIG, "quantization_config": {"quant_method": "gptq", "bits": 4}}
    folder = write_folder(
        tmp_path / "m",
        **{"config.json": config, "model.safetensors": safetensors_bytes({"w": ("I64", [2])})},
    )
    assert read_hf_folder(folder).quantization == "gptq 4-bit"


@pytest.mark.parametrize(
    "shard", ["../outside.safetensors", "/etc/passwd", "sub/model.safetensors", "config.json"]
)
def test_an_index_that_names_anything_but_a_shard_beside_it_is_refused(
    tmp_path: Path, shard: str
) -> None:
    (tmp_path / "outside.safetensors").write_bytes(safetensors_bytes({"x": ("F32", [1])}))
    folder = sharded(tmp_path / "m")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    index["weight_map"]["norm.weight"] = shard
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFormatError, match="in the folder itself"):
        read_hf_folder(folder)


def test_an_index_that_names_a_missing_shard_is_refused(tmp_path: Path) -> None:
    folder = sharded(tmp_path / "m")
    (folder / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(ModelFormatError, match="incomplete"):
        read_hf_folder(folder)


def test_pickle_only_and_config_less_folders_are_refused(tmp_path: Path) -> None:
    pickled = write_folder(tmp_path / "p", **{"config.json": CONFIG, "pytorch_model.bin": b"x"})
    with pytest.raises(ModelFormatError, match="convert them to safetensors"):
        read_hf_folder(pickled)
    bare = write_folder(tmp_path / "b", **{"model.safetensors": safetensors_bytes(SHARD_2)})
    with pytest.raises(ModelFormatError, match="no config.json"):
        read_hf_folder(bare)


@pytest.mark.parametrize("name", ["config.json", "tokenizer_config.json"])
def test_a_folder_that_ships_code_is_refused(tmp_path: Path, name: str) -> None:
    folder = sharded(tmp_path / "m", **{name: {**CONFIG, "auto_map": {"AutoModel": "x.Y"}}})
    with pytest.raises(UnsafeModel, match="auto_map"):
        check_no_remote_code(list_folder(folder))


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x05\x00", "not a safetensors file"),
        (struct.pack("<Q", 1 << 40) + b"{}", "claims"),
        (struct.pack("<Q", 2) + b"[]", "not a JSON object"),
        (struct.pack("<Q", 5) + b"{\xff\xfe}x", "not JSON"),
        (
            safetensors_bytes({"w": ("F32", [2])}).replace(b"[2]", b'"2"'),
            "not a valid safetensors file",
        ),
    ],
)
def test_a_broken_header_is_a_clear_error(tmp_path: Path, data: bytes, reason: str) -> None:
    folder = write_folder(tmp_path / "m", **{"config.json": CONFIG, "model.safetensors": data})
    with pytest.raises(ModelFormatError, match=reason):
        read_hf_folder(folder)


def test_oversized_and_broken_json_is_refused(tmp_path: Path) -> None:
    folder = sharded(tmp_path / "m", **{"config.json": "{not json"})
    with pytest.raises(ModelFormatError, match="config.json is not valid JSON"):
        read_hf_folder(folder)


def test_a_lone_safetensors_file_is_detected_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    path.write_bytes(safetensors_bytes(SHARD_1))
    assert detect(path) == "safetensors"
    info = inspect(path)
    assert (info.parameters, info.quantization, info.architecture) == (192, "BF16", None)


def test_roles_and_plain_names() -> None:
    roles = {
        "model-00001-of-00002.safetensors": "model",
        "model.safetensors.index.json": "config",
        "config.json": "config",
        "generation_config.json": "config",
        "tokenizer.json": "tokenizer",
        "tokenizer.model": "tokenizer",
        "chat_template.jinja": "tokenizer",
        "README.md": "card",
        "LICENSE": "other",
        "training_args.bin": "other",
    }
    assert {name: file_role(name) for name in roles} == roles
    for good in ("model.safetensors", "LICENSE", "vocab.json", "model-00001-of-00002.safetensors"):
        assert is_plain_filename(good), good
    for bad in ("../x", "a/b", "a\\b", ".hidden", "", "..", "a..b", "x y", "ü.json", "a\x00"):
        assert not is_plain_filename(bad), bad
