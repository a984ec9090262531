"""A real `owl serve` on loopback, started once per test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.owl_server import SERVER_CTX, Server, running_server

__all__ = ["SERVER_CTX", "Server", "server"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`owl serve --ctx 512` over its own OWL_HOME; it must stop cleanly and never answer 500."""
    with running_server(tmp_path_factory.mktemp("serve")) as running:
        yield running
