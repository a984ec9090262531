"""Fixtures for owl tune: the bundled model stored, dequantized once per session, the converter.

Dequantizing SmolLM2 takes about a minute: it happens once per test session, in the
session's temp folder (tests/support/smollm2.py, shared with the convert tests), and every
test's OWL_HOME gets a link to it where owl.tune looks
(OWL_HOME/cache/dequantized/<weights sha256>/). T2 and T3 use `tune_base` too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from owl.config import Settings, load_settings
from owl.pull import open_store, pull
from owl.store import Manifest, Store
from owl.tune.base import chat_template, dequantized_dir, load_tokenizer
from owl.tune.data import Encoded, Encoder, read_examples
from tests.quantize.test_convert import shared_tools
from tests.support.smollm2 import smollm2_hf_folder
from tests.support.tiny_lora import tiny_llama_folder


@pytest.fixture(scope="session")
def dequantized_smollm2(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    """The bundled GGUF as a float32 safetensors folder: the session's one SmolLM2 folder
    (tests/support/smollm2.py), which the convert and transformers tests read too."""
    return smollm2_hf_folder(tmp_path_factory.getbasetemp(), bundled_gguf)


@pytest.fixture(scope="session")
def tune_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tools folder holding llama.cpp's converters: the session's one (test_convert's)."""
    return shared_tools(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    """The tiny random-weight llama (tests/support/tiny_models.py) with SmolLM2's tokenizer,
    for the tests whose point is how a run goes (resumed, split over processes), not what
    SmolLM2 learns: a step takes milliseconds, and a process loads it in no time."""
    return tiny_llama_folder(tmp_path_factory.getbasetemp(), bundled_gguf)


@dataclass
class TuneBase:
    settings: Settings
    store: Store
    base: Manifest
    folder: Path


@pytest.fixture
def tune_base(
    owl_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    dequantized_smollm2: Path,
    tune_tools: Path,
) -> TuneBase:
    """This test's OWL_HOME with smollm2 stored, its dequantized folder and the converter."""
    monkeypatch.setenv("OWL_TOOLS", str(tune_tools))
    monkeypatch.setenv("OWL_THREADS", "1")
    settings = load_settings()
    store = open_store(settings)
    base = pull("smollm2", store=store, settings=settings)
    link = dequantized_dir(settings, base.weights.digest)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(dequantized_smollm2, target_is_directory=True)
    return TuneBase(settings, store, base, link)


# Data and adapters the tune tests share

NAMES = ("Ada", "Bob", "Cy", "Dee", "Eve")


def tiny_dataset(path: Path, count: int = 20) -> Path:
    """`count` examples of all three shapes: names into a fixed JSON shape."""
    lines = []
    for index in range(count):
        name = NAMES[index % len(NAMES)]
        answer = json.dumps({"name": name})
        if index % 3 == 0:
            lines.append(
                {
                    "messages": [
                        {"role": "user", "content": f"Who is {name}?"},
                        {"role": "assistant", "content": answer},
                    ]
                }
            )
        elif index % 3 == 1:
            lines.append({"prompt": f"Name: {name}\nJSON:", "completion": f" {answer}"})
        else:
            lines.append({"text": f"{name} is written {answer}."})
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def encoded(folder: Path, path: Path, max_len: int = 64) -> tuple[list[Encoded], int]:
    """The examples of `path` encoded with the tokenizer of the model folder `folder`."""
    tokenizer = load_tokenizer(folder)
    encoder = Encoder(tokenizer, chat_template(tokenizer), max_len=max_len)
    return encoder.encode_all(read_examples(path), path=path), tokenizer.eos_token_id


def adapter_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")
