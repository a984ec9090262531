"""Hostile pulls against a real `owl serve` (issue 12): stalled and looping sources,
private addresses, keys. Requests: test_hostile_requests.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.fileserver import FileServer
from tests.support.hostile import (
    ALLOW_PRIVATE,
    HI,
    KEY,
    LOAD_PROOF_S,
    MODEL,
    StalledHost,
    assert_alive,
    error_of,
)
from tests.support.owl_server import Server, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server whose pulls may fetch from loopback, as a LAN mirror needs."""
    with running_server(tmp_path_factory.mktemp("open"), args=[ALLOW_PRIVATE]) as running:
        yield running


# 3: pulls from a host that never answers must not take the threads every route needs.
def test_stalled_pulls_do_not_starve_other_requests(open_server: Server) -> None:
    pulls = 44  # more than the 40 worker threads that the routes share
    sent = threading.Semaphore(0)

    def trace(event: str, info: dict) -> None:
        if event == "http11.send_request_body.complete":
            sent.release()

    limits = httpx.Limits(max_connections=pulls + 8)
    # Left in reverse: the host closes first, so that the stalled pulls then fail at once.
    with (
        httpx.Client(base_url=open_server.base, timeout=600, limits=limits) as http,
        ThreadPoolExecutor(pulls) as pool,
        StalledHost() as host,
    ):
        body = {"model": host.url(), "insecure": True, "stream": False}
        extensions = {"trace": trace}
        futures = [
            pool.submit(http.post, "/api/pull", json=body, extensions=extensions)
            for _ in range(pulls)
        ]
        for _ in range(pulls):  # every pull has reached the server before the others ask
            assert sent.acquire(timeout=LOAD_PROOF_S)
        tags = http.get("/api/tags", timeout=LOAD_PROOF_S)
        chat = http.post(
            "/v1/chat/completions",
            json={"model": MODEL, "messages": HI, "max_tokens": 2},
            timeout=LOAD_PROOF_S,
        )
    answers = [future.result() for future in futures]
    assert tags.status_code == 200
    assert chat.status_code == 200, chat.text[:500]
    for response in answers:
        assert response.status_code in (429, 502), response.text[:500]
        error_of("/api/pull", response)
    assert_alive(open_server)


# 9: a pull that redirects to itself is a download failure, not a 500.
def test_a_pull_redirecting_to_itself_is_502(open_server: Server) -> None:
    with FileServer() as files:
        files.add_error("/loop.gguf", 302, {"Location": files.url("/loop.gguf")})
        body = {"model": files.url("/loop.gguf"), "insecure": True, "stream": False}
        response = httpx.post(f"{open_server.base}/api/pull", json=body, timeout=120)
    assert response.status_code == 502, response.text[:500]
    assert "redirect" in error_of("/api/pull", response).lower()
    assert files.gets("/loop.gguf"), "the pull never reached the file server"
    assert_alive(open_server)


# 13: a stalled pull's stream says something at once.
def test_a_stalled_pull_stream_starts_at_once(open_server: Server) -> None:
    with StalledHost() as host, httpx.Client(base_url=open_server.base) as http:
        body = {"model": host.url(), "insecure": True}
        with http.stream("POST", "/api/pull", json=body, timeout=LOAD_PROOF_S) as response:
            assert response.status_code == 200
            first = next(response.iter_lines())
    assert json.loads(first) == {"status": "pulling manifest"}
    assert_alive(open_server)


# Also: pulls by request reach no private address by default, and need the key when set.
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "127.0.0.2", "0.0.0.0", "[::1]"])
def test_a_pull_from_a_loopback_address_is_refused_by_default(
    server: Server, http: httpx.Client, tmp_path: Any, host: str
) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    with FileServer() as files:
        files.add("/m.gguf", tmp_path / "m.gguf")
        url = files.url("/m.gguf").replace("127.0.0.1", host)
        response = http.post("/api/pull", json={"model": url, "insecure": True, "stream": False})
    assert 400 <= response.status_code < 500, response.text[:500]
    error_of("/api/pull", response)
    assert files.requests == [], "the server fetched from a loopback address"
    assert_alive(server)


def test_pull_and_delete_need_the_key_when_keys_are_set(tmp_path: Any) -> None:
    with (
        running_server(tmp_path, args=["--api-key", KEY]) as server,
        httpx.Client(base_url=server.base, timeout=120) as http,
    ):
        pull = {"model": MODEL, "stream": False}
        delete = {"model": "no-such-model"}
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            assert http.post("/api/pull", json=pull, headers=headers).status_code == 401
            response = http.request("DELETE", "/api/delete", json=delete, headers=headers)
            assert response.status_code == 401
        auth = {"Authorization": f"Bearer {KEY}"}
        assert http.post("/api/pull", json=pull, headers=auth).status_code == 200
        response = http.request("DELETE", "/api/delete", json=delete, headers=auth)
        assert response.status_code in (404, 405), response.text[:500]
        assert_alive(server)
