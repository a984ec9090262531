"""Fixtures for owl tune: the bundled model stored, dequantized once per session, the converter.

Dequantizing SmolLM2 takes about a minute: it happens once per test session, in the
session's temp folder, and every test's OWL_HOME gets a link to it where owl.tune looks
(OWL_HOME/cache/dequantized/<weights sha256>/). T2 and T3 use `tune_base` too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from owl.config import Settings, load_settings
from owl.quantize.converter import ensure_converter
from owl.store import Manifest, Store, open_store, pull
from owl.tune.base import dequantize, dequantized_dir


@pytest.fixture(scope="session")
def dequantized_smollm2(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Path:
    """The bundled GGUF as a float32 safetensors folder (built once per session)."""
    from owl.formats import inspect

    folder = tmp_path_factory.getbasetemp() / "tune-dequantized-smollm2"
    if not (folder / "config.json").is_file():
        dequantize(bundled_gguf, folder, chat_template=inspect(bundled_gguf).chat_template)
    return folder


@pytest.fixture(scope="session")
def tune_tools(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tools folder holding llama.cpp's converters, fetched once per session."""
    tools = tmp_path_factory.getbasetemp() / "tune-tools"
    ensure_converter(tools)
    return tools


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
