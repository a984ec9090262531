"""A model folder signed by model-signing itself with a real key, shared; copies to tamper with."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from owl.signatures.crypto import sign_folder
from tests.support.signing import KeyPair, write_key_pair, write_model_folder


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_key_pair(tmp_path_factory.mktemp("keys"), "publisher")


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return write_key_pair(tmp_path_factory.mktemp("other-keys"), "stranger")


@pytest.fixture(scope="session")
def signed_original(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> Path:
    folder = write_model_folder(tmp_path_factory.mktemp("signed") / "tiny")
    sign_folder(folder, private_key=keys.private)
    return folder


@pytest.fixture
def signed_folder(tmp_path: Path, signed_original: Path) -> Path:
    """A copy of the signed folder that the test may tamper with."""
    return Path(shutil.copytree(signed_original, tmp_path / "tiny"))
