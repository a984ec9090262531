"""GGUF → ModelInfo with owl's bounded reader, checked against the gguf package; damaged files
are clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader, GGUFWriter

from owl.errors import ModelFormatError
from owl.formats import detect, human_bytes, human_count, inspect
from tests.support.gguf_bytes import RawTensor, build_gguf, kv_str, kv_str_array


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


def test_bundled_model_is_read_like_the_gguf_package(bundled_gguf: Path) -> None:
    stock = GGUFReader(bundled_gguf, "r")
    info = inspect(bundled_gguf)
    assert info.chat_template == stock.fields["tokenizer.chat_template"].contents()
    assert info.architecture == stock.fields["general.architecture"].contents()
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


def test_cut_files_say_where_and_what_to_do(tmp_path: Path) -> None:
    data = build_gguf(tensors=[RawTensor("a", (8,)), RawTensor("b", (8,))])
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(data[:-4])
    with pytest.raises(ModelFormatError) as caught:
        inspect(cut)
    assert str(caught.value) == (
        f"cut.gguf is truncated: tensor 'b' ends at byte {len(data):,} but the file has "
        f"{len(data) - 4:,}; download it again"
    )
    cut.write_bytes(data[:77])  # in the middle of the second tensor's entry
    with pytest.raises(ModelFormatError) as caught:
        inspect(cut)
    assert str(caught.value).startswith("cut.gguf is not a valid GGUF file (tensor 'b': ")
    assert str(caught.value).endswith("; it may be truncated or corrupt: download it again")


def test_files_llama_cpp_would_refuse_are_invalid(tmp_path: Path) -> None:
    path = tmp_path / "bad.gguf"
    path.write_bytes(build_gguf(tensors=[RawTensor("t", (4,), offset=4)]))
    with pytest.raises(ModelFormatError, match=r"\(tensor 't': its data offset 4 is not a multi"):
        inspect(path)
    path.write_bytes(build_gguf([kv_str("k", "x"), kv_str("k", "y")]))
    with pytest.raises(ModelFormatError, match="appears twice"):
        inspect(path)


def test_values_that_are_not_text_are_left_out(tmp_path: Path) -> None:
    path = tmp_path / "odd.gguf"
    kv = [
        kv_str("general.architecture", "llama"),
        kv_str("general.name", b"\xff\xfe"),
        kv_str_array("tokenizer.ggml.tokens", [b"\xff", b"ok", b""]),
        kv_str_array("llama.context_length", ["not", "a", "number"]),
    ]
    path.write_bytes(build_gguf(kv, [RawTensor("t", (4, 2))]))
    info = inspect(path)
    assert (info.name, info.vocab_size, info.context_length) == (None, 3, None)
    assert info.parameters == 8
    assert info.metadata == {"general.architecture": "llama"}
