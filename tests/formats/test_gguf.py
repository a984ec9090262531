"""GGUF → ModelInfo, with the gguf package; damaged files are clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter

from owl.errors import ModelFormatError
from owl.formats import detect, human_bytes, human_count, inspect


def _write_tiny(path: Path) -> None:
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("tiny test model")
    writer.add_context_length(128)
    writer.add_embedding_length(8)
    writer.add_block_count(1)
    writer.add_head_count(2)
    writer.add_license("mit")
    writer.add_file_type(0)  # ALL_F32
    writer.add_token_list(["<s>", "</s>", "hello", "wörld", ""])
    writer.add_token_scores([0.0, -1.0, -2.5, -3.0, 0.5])
    writer.add_token_types([3, 3, 1, 1, 1])
    writer.add_chat_template("{% for m in messages %}{{ m.content }}{% endfor %}")
    writer.add_tensor("token_embd.weight", np.ones((5, 8), dtype=np.float32))
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_tiny_generated_gguf(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    _write_tiny(path)
    info = inspect(path)
    assert info.format == "gguf"
    assert info.architecture == "llama"
    assert info.name == "tiny test model"
    assert info.parameters == 5 * 8 + 8
    assert info.quantization == "ALL_F32"
    assert info.tensor_types == {"F32": 2}
    assert (info.context_length, info.embedding_length, info.block_count, info.head_count) == (
        128,
        8,
        1,
        2,
    )
    assert info.vocab_size == 5
    assert info.license == "mit"
    assert info.chat_template == "{% for m in messages %}{{ m.content }}{% endfor %}"
    # Arrays are measured, not copied into the metadata that `owl show` prints.
    assert "tokenizer.ggml.tokens" not in info.metadata
    assert info.metadata["general.name"] == "tiny test model"


def test_length_only_reader_agrees_with_the_stock_reader(bundled_gguf: Path) -> None:
    stock = GGUFReader(bundled_gguf, "r")
    info = inspect(bundled_gguf)
    assert info.vocab_size == len(stock.fields["tokenizer.ggml.tokens"].data)
    assert info.parameters == sum(int(tensor.n_elements) for tensor in stock.tensors)
    assert sum(info.tensor_types.values()) == len(stock.tensors)
    for key, field in stock.fields.items():
        if key in info.metadata:
            assert info.metadata[key] == field.contents(), key


def test_bundled_model(bundled_gguf: Path) -> None:
    info = inspect(bundled_gguf)
    assert (info.architecture, info.quantization, info.context_length) == ("llama", "Q4_1", 8192)
    assert human_count(info.parameters) == "135M"
    assert info.license == "apache-2.0"
    assert human_bytes(bundled_gguf.stat().st_size) == "93.8 MiB"


def test_damaged_files(tmp_path: Path, bundled_gguf: Path) -> None:
    text = tmp_path / "readme.gguf"
    text.write_text("hello")
    with pytest.raises(ModelFormatError, match="no GGUF header"):
        detect(text)
    data = bundled_gguf.read_bytes()
    for size, reason in (
        (6, "not a valid GGUF"),
        (2_000, "not a valid GGUF"),
        (len(data) - 10, "truncated"),
    ):
        cut = tmp_path / f"cut-{size}.gguf"
        cut.write_bytes(data[:size])
        with pytest.raises(ModelFormatError, match=reason):
            inspect(cut)
    with pytest.raises(ModelFormatError, match="cannot read"):
        inspect(tmp_path / "absent.gguf")
