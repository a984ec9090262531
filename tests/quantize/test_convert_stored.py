"""owl convert NAME: a safetensors model pulled into the store → GGUF, with its lineage.

The stored model is a tiny random-weight llama folder (tests/support/tiny_models.py); the
conversion reads its snapshot folder (links to the blobs) with llama.cpp's own converter.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from owl.config import Settings
from owl.errors import NameClash, SourceNotFound, UnsafeModel
from owl.formats import inspect
from owl.pull import pull
from owl.quantize.convert import convert
from owl.quantize.converter import llama_cpp_version
from owl.store import RefKind, Store
from tests.quantize.test_convert import shared_tools
from tests.support.cli import owl
from tests.support.tiny_lora import tiny_llama_folder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    return tiny_llama_folder(tmp_path_factory.getbasetemp(), bundled_gguf)


@pytest.fixture(scope="session")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_tools(tmp_path_factory.getbasetemp())


def test_a_stored_folder_converts_with_its_lineage(
    store: Store, settings: Settings, tiny_llama: Path, tools: Path
) -> None:
    parent = pull(str(tiny_llama), store=store, settings=settings)
    converted = convert("tiny-llama", store=store, settings=settings, tools=tools)
    assert converted.display_name == "tiny-llama:f16"
    assert converted.format == "gguf"
    info = inspect(store.weights_path(converted))
    assert info.architecture == "llama" and info.quantization == "F16"
    assert info.parameters == parent.info["parameters"]
    (lineage,) = converted.parents
    assert (lineage.name, lineage.digest, lineage.relation) == (
        "tiny-llama",
        parent.weights.digest,
        "converted",
    )
    assert lineage.license == parent.license == "apache-2.0"
    assert lineage.source == parent.source
    assert converted.license == "apache-2.0"
    assert converted.source.kind is RefKind.NAME and converted.source.uri == "tiny-llama"
    assert converted.scans[converted.weights.digest].verdict == "clean"
    # Again: the stored conversion; another model's name: a clash.
    assert convert("tiny-llama", store=store, settings=settings, tools=tools) == converted
    pull(str(tiny_llama), store=store, settings=settings, name="other")
    with pytest.raises(NameClash):
        convert("other", store=store, settings=settings, tools=tools, name="tiny-llama:f16")
    # Removing the parent leaves the GGUF whole (its own blob).
    store.remove(parent.model_name)
    assert store.weights_path(converted).is_file()


def test_a_stored_gguf_and_an_unsafe_folder_are_not_converted(
    store: Store, settings: Settings, tiny_llama: Path, tmp_path: Path
) -> None:
    pull("smollm2", store=store, settings=settings)
    with pytest.raises(SourceNotFound, match="needs no conversion"):
        convert("smollm2", store=store, settings=settings, tools=tmp_path / "no-tools")
    folder = Path(shutil.copytree(tiny_llama, tmp_path / "unsafe-llama"))

    class Payload:
        def __reduce__(self):  # noqa: ANN204
            return (os.system, ("echo pwned",))

    (folder / "training_args.bin").write_bytes(pickle.dumps(Payload()))
    pull(str(folder), store=store, settings=settings)
    with pytest.raises(UnsafeModel, match="training_args.bin"):
        convert("unsafe-llama", store=store, settings=settings, tools=tmp_path / "no-tools")
    assert not (tmp_path / "no-tools").exists()  # refused before fetching the converter


def test_owl_convert_name_on_the_command_line(owl_env: Path, tiny_llama: Path, tools: Path) -> None:
    name = f"llama.cpp-converter-{llama_cpp_version()}"
    (owl_env / "tools").mkdir(parents=True)
    (owl_env / "tools" / name).symlink_to(tools / name)
    assert owl(owl_env, "pull", str(tiny_llama), "--name", "tl").returncode == 0
    done = owl(owl_env, "convert", "tl", "--outtype", "q8_0", "--json")
    assert done.returncode == 0, done.stderr
    manifest = json.loads(done.stdout)
    assert (manifest["name"], manifest["tag"]) == ("tl", "q8_0")
    assert manifest["parents"][0]["name"] == "tl"
    assert manifest["parents"][0]["relation"] == "converted"
