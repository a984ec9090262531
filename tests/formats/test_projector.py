"""A projector GGUF's facts (owl.formats.projector), from a real tiny mmproj file."""

from __future__ import annotations

from pathlib import Path

import pytest

from owl.errors import ModelFormatError
from owl.formats import inspect
from owl.formats.projector import (
    ProjectorFacts,
    check_projector,
    is_projector,
    is_projector_file,
    projector_facts,
)
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_mmproj import write_tiny_mmproj


def test_facts_of_a_projector(tmp_path: Path) -> None:
    metadata = inspect(write_tiny_mmproj(tmp_path / "mmproj.gguf")).metadata
    assert is_projector(metadata)
    facts = projector_facts(metadata)
    assert facts == ProjectorFacts("idefics3", 64, 8, 8)
    assert facts.describe() == "idefics3, 64×64 images in 8×8 patches, into 8-wide embeddings"
    assert check_projector(metadata, filename="mmproj.gguf", embedding_length=8) == facts


def test_the_newer_key_of_the_projector_type_is_read() -> None:
    metadata = {"general.architecture": "clip", "clip.vision.projector_type": "qwen2.5vl_merger"}
    assert projector_facts(metadata).projector_type == "qwen2.5vl_merger"
    assert projector_facts(metadata).describe() == "qwen2.5vl_merger"


def test_a_language_model_is_no_projector(tmp_path: Path) -> None:
    metadata = inspect(write_tiny_gguf(tmp_path / "m.gguf")).metadata
    assert not is_projector(metadata)
    with pytest.raises(ModelFormatError, match="m.gguf is not a vision projector"):
        check_projector(metadata, filename="m.gguf", embedding_length=8)


def test_a_projector_of_another_width_is_refused(tmp_path: Path) -> None:
    metadata = inspect(write_tiny_mmproj(tmp_path / "p.gguf", projection_dim=16)).metadata
    with pytest.raises(ModelFormatError, match="16-wide embeddings.*576 wide"):
        check_projector(metadata, filename="p.gguf", embedding_length=576)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mmproj-model-f16.gguf", True),
        ("sub/MMPROJ-x.gguf", True),
        ("x-Q8_0.gguf", False),
        ("mmproj-notes.txt", False),
    ],
)
def test_is_projector_file(name: str, expected: bool) -> None:
    assert is_projector_file(name) is expected
