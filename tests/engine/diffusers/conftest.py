"""Tiny Stable Diffusion pipelines, pulled into a store and loaded once for the session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from owl import engine
from owl.config import Settings
from owl.engine.backend import Drawer
from owl.pull import open_store, pull
from tests.support.tiny_diffusion import build_tiny_sd, build_tiny_sdxl

# The tests compare with diffusers used directly in this process: the same torch threads.
THREADS = 2


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl") / "tiny-sdxl")


def load_drawer(folder: Path, home: Path, *, parameters: dict | None = None) -> Drawer:
    """`folder` pulled into a store at `home` (with `parameters`, the model's defaults) and
    loaded for DRAW as owl does it."""
    config = Settings(home=home, threads=THREADS)
    store = open_store(config)
    manifest = pull(str(folder), store=store, settings=config, parameters=parameters)
    return engine.load(manifest, store=store, settings=config, capability=engine.Capability.DRAW)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def sd_drawer(tiny_sd: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Drawer]:
    drawer = load_drawer(tiny_sd, tmp_path_factory.mktemp("sd-home"))
    yield drawer
    drawer.close()
