"""A real `owl serve` on loopback, started once per test module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.owl_server import SERVER_CTX, Server, running_server

__all__ = ["SERVER_CTX", "Server", "server"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`owl serve --ctx 512` over its own OWL_HOME; it must stop cleanly and never answer 500."""
    with running_server(tmp_path_factory.mktemp("serve")) as running:
        yield running


# The servers the hostile-client modules share (tests/server/test_hostile_*.py).
SHARED_SERVERS = ("server", "narrow", "open_server")


@pytest.fixture(autouse=True)
def _servers_still_up(request: pytest.FixtureRequest) -> None:
    """A crash in one test shows there, not as "connection refused" in every later one."""
    for name in SHARED_SERVERS:
        if name in request.fixturenames:
            process = request.getfixturevalue(name).process
            if process.poll() is not None:
                pytest.fail(f"the {name} died in an earlier test (exit {process.returncode})")


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    """A client of the module's server (modules with a client of their own override it)."""
    with httpx.Client(base_url=server.base, timeout=120) as client:
        yield client
