"""owl.scan.gguf: real GGUF files pass; each rule of llama.cpp's reader, broken once, fails."""

from __future__ import annotations

import struct
from pathlib import Path

import gguf
import numpy as np
import pytest

from owl.formats.gguf import read_gguf_header
from owl.formats.gguf_layout import GGUFArray
from owl.scan.findings import Unverified
from owl.scan.gguf import scan_gguf
from tests.support.gguf_bytes import (
    ARRAY,
    F32,
    GGML_Q4_0,
    STRING,
    U32,
    U64,
    RawTensor,
    build_gguf,
    gguf_string,
    kv_entry,
    kv_str,
    kv_str_array,
    kv_u32,
)
from tests.support.tiny_gguf import write_tiny_gguf

TWO_TENSORS = [RawTensor("a.weight", (8, 2)), RawTensor("b.weight", (8,))]


def unverified(path: Path) -> Unverified:
    with pytest.raises(Unverified) as caught:
        scan_gguf(path, file=path.name)
    return caught.value


def written(tmp_path: Path, data: bytes, name: str = "model.gguf") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_bundled_model_is_clean_and_read_like_the_gguf_package(bundled_gguf: Path) -> None:
    assert scan_gguf(bundled_gguf, file="smollm2.gguf") == []
    header = read_gguf_header(bundled_gguf)
    reference = gguf.GGUFReader(bundled_gguf)
    assert header.data_offset == reference.data_offset
    assert [t.name for t in header.tensors] == [t.name for t in reference.tensors]
    assert [header.data_offset + t.offset for t in header.tensors] == [
        t.data_offset for t in reference.tensors
    ]
    assert [t.n_bytes for t in header.tensors] == [int(t.n_bytes) for t in reference.tensors]
    tokens = header.kv["tokenizer.ggml.tokens"]
    assert isinstance(tokens, GGUFArray) and tokens.count == 49152
    assert header.kv["general.architecture"] == "llama"
    assert isinstance(header.kv["tokenizer.chat_template"], str)


def test_bundled_model_cut_after_its_header_is_unverified(
    tmp_path: Path, bundled_gguf: Path
) -> None:
    header = read_gguf_header(bundled_gguf)
    cut = tmp_path / "cut.gguf"
    with bundled_gguf.open("rb") as source, cut.open("wb") as target:
        target.write(source.read(header.data_offset + 1024))
    err = unverified(cut)
    assert err.location == "tensor 'token_embd.weight'"
    assert "past the end of the" in err.reason and "download it again" in err.reason


def test_tiny_written_gguf_is_clean(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert scan_gguf(path, file="tiny.gguf") == []
    header = read_gguf_header(path)
    assert [(t.name, t.shape) for t in header.tensors] == [
        ("token_embd.weight", (8, 32)),
        ("output_norm.weight", (8,)),
    ]
    assert header.kv["general.name"] == "tiny-test"


def test_hand_built_files_are_valid_by_default(tmp_path: Path) -> None:
    kv = [kv_str("general.name", "x"), kv_u32("general.alignment", 64), kv_str_array("t", "ab")]
    data = build_gguf(kv, TWO_TENSORS, alignment=64)
    assert scan_gguf(written(tmp_path, data), file="x") == []
    assert scan_gguf(written(tmp_path, build_gguf(kv[:1])), file="x") == []  # no tensors


def test_every_truncation_of_a_real_file_is_unverified(tmp_path: Path) -> None:
    whole = write_tiny_gguf(tmp_path / "tiny.gguf").read_bytes()
    header = read_gguf_header(tmp_path / "tiny.gguf")
    last = header.tensors[-1]
    needed = header.data_offset + last.offset + last.n_bytes
    cuts = [*range(0, header.data_offset + 8), *range(header.data_offset + 8, needed, 97)]
    for cut in cuts:
        err = unverified(written(tmp_path, whole[:cut], "cut.gguf"))
        assert "Traceback" not in err.reason
    assert scan_gguf(written(tmp_path, whole[:needed], "cut.gguf"), file="x") == []


@pytest.mark.parametrize(
    ("data", "location", "words"),
    [
        (b"GGUF", "header", "too few"),  # ollama's 4-byte crash
        (b"", "header", "too few"),
        (build_gguf(magic=b"GGML"), "header", "magic"),
        (build_gguf(version=1), "header", "version 1"),
        (build_gguf(version=0), "header", "version 0"),
        (build_gguf(version=4), "header", "version 4"),
        (build_gguf(version=3 << 24), "header", "big-endian"),
        (build_gguf(n_kv=1 << 40), "header", "1,099,511,627,776 metadata entries"),
        (build_gguf(n_tensors=-1), "header", "-1 tensors"),
        (build_gguf([kv_entry("kk", STRING, struct.pack("<Q", 1 << 62))]), "key 'kk'", "claims"),
        (build_gguf([struct.pack("<Q", 1 << 40) + b"key" * 8]), "metadata entry 0", "the key"),
        (build_gguf([kv_entry("k", 13, b"\0" * 8)]), "metadata key 'k'", "value type 13"),
        (build_gguf([kv_entry("k", ARRAY, struct.pack("<IQ", 13, 1))]), "key 'k'", "type 13"),
        (build_gguf([kv_entry("k", ARRAY, struct.pack("<IQ", U32, 1 << 40))]), "key 'k'", "items"),
        (build_gguf([kv_entry("k", ARRAY, struct.pack("<IQQQ", STRING, 2, 0, 100))]),
         "key 'k'", "item 1 of the value"),
        (build_gguf([kv_entry("k", ARRAY, struct.pack("<IQ", STRING, 3) + gguf_string("a"))]),
         "key 'k'", "needs 24 bytes"),
        (build_gguf([kv_entry("k", ARRAY, struct.pack("<IQ", ARRAY, 1) * 9 + b"\0" * 12)]),
         "key 'k'", "nests arrays"),
        (build_gguf([kv_str("", "x")]), "metadata entry 0", "empty"),
        (build_gguf([kv_str(b"\xff\xfe", "x")]), "metadata entry 0", "UTF-8"),
        (build_gguf([kv_str("k", "x"), kv_u32("k", 1)]), "metadata key 'k'", "twice"),
        (build_gguf([kv_u32("general.alignment", 48)], TWO_TENSORS, alignment=48),
         "metadata key 'general.alignment'", "power of two"),
        (build_gguf([kv_u32("general.alignment", 0)]), "key 'general.alignment'", "power of two"),
        (build_gguf([kv_entry("general.alignment", U64, struct.pack("<Q", 32))]),
         "key 'general.alignment'", "u32, not a u64"),
        (build_gguf(tensors=[RawTensor("t", (1, 1, 1, 1, 1))]), "tensor 't'", "5 dimensions"),
        (build_gguf(tensors=[RawTensor("t", (4, -1))]), "tensor 't'", "negative"),
        (build_gguf(tensors=[RawTensor("t", (1 << 32, 1 << 31))], data_size=0), "tensor 't'",
         "more elements"),
        (build_gguf(tensors=[RawTensor("t", (4,), ggml_type=4)]), "tensor 't'", "type 4"),
        (build_gguf(tensors=[RawTensor("t", (33,), ggml_type=GGML_Q4_0)]), "tensor 't'", "block"),
        (build_gguf(tensors=[RawTensor("n" * 64, (4,))]), "tensor 0", "64 bytes"),
        (build_gguf(tensors=[RawTensor(b"\xc3(", (4,))]), "tensor 0", "UTF-8"),
        (build_gguf(tensors=[RawTensor("a\0b", (4,))]), "tensor 0", "NUL"),
        (build_gguf(tensors=[RawTensor("t", (4,), offset=4)]), "tensor 't'", "alignment"),
        (build_gguf(tensors=[RawTensor("a", (4,)), RawTensor("b", (4,), offset=64)]),
         "tensor 'b'", "gaps or overlaps"),
        (build_gguf(tensors=[RawTensor("a", (8,)), RawTensor("b", (4,), offset=0)]),
         "tensor 'b'", "gaps or overlaps"),
        (build_gguf(tensors=[RawTensor("t", (4,), offset=32)]), "tensor 't'", "end at 0"),
        (build_gguf(tensors=TWO_TENSORS, data_size=70), "tensor 'b.weight'", "past the end"),
        (build_gguf(tensors=[RawTensor("t", (1 << 30,))], data_size=0), "tensor 't'",
         "4,294,967,296 bytes"),
        (build_gguf(tensors=[RawTensor("t", (4,)), RawTensor("t", (4,))]), "tensor 't'", "two"),
        (build_gguf(tensors=[RawTensor("t", (0,))])[:-1], "header", "tensor data should start"),
    ],
)  # fmt: skip
def test_malformed_gguf_is_unverified(
    tmp_path: Path, data: bytes, location: str, words: str
) -> None:
    err = unverified(written(tmp_path, data))
    assert location in err.location
    assert words in err.reason


def test_messages_say_what_to_do(tmp_path: Path) -> None:
    err = unverified(
        written(tmp_path, build_gguf(tensors=[RawTensor("x", (1 << 30,))], data_size=4))
    )
    assert err.reason == (
        "tensor 'x' claims 4,294,967,296 bytes at offset 64, past the end of the 68-byte file; "
        "the file is truncated or corrupt: download it again"
    )


def test_chat_template_of_wrong_type_is_unverified(tmp_path: Path) -> None:
    path = written(tmp_path, build_gguf([kv_u32("tokenizer.chat_template", 7)]))
    err = unverified(path)
    assert err.location == "metadata key 'tokenizer.chat_template'"
    assert "not text" in err.reason
    variant = kv_entry("tokenizer.chat_template.rag", ARRAY, struct.pack("<IQ", F32, 0))
    err = unverified(written(tmp_path, build_gguf([variant])))
    assert err.location == "metadata key 'tokenizer.chat_template.rag'"


def _gguf_with_templates(path: Path, templates: dict[str, str]) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    for name, template in templates.items():
        writer.add_string(name, template)
    writer.add_tensor("output_norm.weight", np.ones(8, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


EVIL = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
BENIGN = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"


def test_chat_templates_go_to_the_template_checker(tmp_path: Path) -> None:
    keys = {"tokenizer.chat_template": BENIGN, "tokenizer.chat_template.tool_use": EVIL}
    findings = scan_gguf(_gguf_with_templates(tmp_path / "t.gguf", keys), file="t.gguf")
    assert findings
    # The template checker adds the line inside the template to the location.
    assert all(
        f.location.startswith("metadata key 'tokenizer.chat_template.tool_use'") for f in findings
    )
    assert {f.file for f in findings} == {"t.gguf"}
    benign = {"tokenizer.chat_template": BENIGN}
    assert scan_gguf(_gguf_with_templates(tmp_path / "b.gguf", benign), file="b.gguf") == []


def test_template_findings_survive_a_broken_tensor_table(tmp_path: Path) -> None:
    whole = _gguf_with_templates(tmp_path / "t.gguf", {"tokenizer.chat_template": EVIL})
    data = whole.read_bytes()
    err = unverified(written(tmp_path, data[: read_gguf_header(whole).data_offset + 4]))
    assert "past the end" in err.reason
    assert err.findings
    assert all(
        f.location.startswith("metadata key 'tokenizer.chat_template'") for f in err.findings
    )


def test_scan_does_not_decode_vocabulary_strings(tmp_path: Path) -> None:
    # Token strings are bytes to the tokenizer; only keys, names and templates are text.
    data = build_gguf([kv_str_array("tokenizer.ggml.tokens", [b"\xff", b"ok"])], TWO_TENSORS)
    assert scan_gguf(written(tmp_path, data), file="x") == []
