"""Helpers for the hostile-client tests (tests/server/test_hostile_*.py): error shapes,
liveness, /metrics slots, and a host that accepts connections and never answers."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import Server

MODEL = "smollm2"
HI = [{"role": "user", "content": "Say hello."}]
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"  # a prompt the model keeps continuing
# A client timeout that no machine under load reaches unless the server hangs.
LOAD_PROOF_S = 30
KEY = "hostile-test-key"
# The Ollama routes that read their JSON body themselves (no body schema in OpenAPI).
OLLAMA_BODY_ROUTES = [
    "/api/chat",
    "/api/generate",
    "/api/show",
    "/api/pull",
    "/api/embed",
    "/api/embeddings",
]
# owl serve's opt-in that lets pulls by request reach loopback and private addresses.
ALLOW_PRIVATE = "--allow-private-sources"


def error_of(path: str, response: httpx.Response) -> str:
    """The error message, after checking the error shape of the API `path` belongs to."""
    body = response.json()
    if path.startswith("/api/"):
        assert set(body) == {"error"} and isinstance(body["error"], str), body
        return body["error"]
    error = body["error"]
    assert {"message", "type", "param", "code"} <= set(error), body
    assert isinstance(error["message"], str)
    return error["message"]


def assert_alive(server: Server) -> None:
    assert server.process.poll() is None, f"owl serve died:\n{server.log_text()[-3000:]}"
    assert httpx.get(f"{server.base}/health", timeout=LOAD_PROOF_S).status_code == 200


def post_raw(http: httpx.Client, path: str, raw: bytes, **kwargs: Any) -> httpx.Response:
    """POST bytes as they are: JSON that json.dumps or httpx would not write."""
    return http.post(path, content=raw, headers={"Content-Type": "application/json"}, **kwargs)


def slots(http: httpx.Client) -> tuple[float, float, float]:
    """(slots busy, generations waiting, completion tokens so far) of MODEL, from /metrics."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(http.get("/metrics").text):
        for sample in family.samples:
            if sample.labels.get("model") == MODEL:
                values[sample.name] = sample.value
    return (
        values.get("owl_slots_busy", 0.0),
        values.get("owl_queue_depth", 0.0),
        values.get("owl_completion_tokens_total", 0.0),
    )


def wait_for_slots(http: httpx.Client, wanted: Any, what: str) -> tuple[float, float, float]:
    """Poll /metrics until `wanted(busy, waiting)`; a generous bound turns a hang into a failure."""
    for _ in range(LOAD_PROOF_S * 20):
        state = slots(http)
        if wanted(state[0], state[1]):
            return state
        time.sleep(0.05)  # a gauge is polled: the server offers no event to wait on
    pytest.fail(f"{what}: slots stayed at {state}")


class StalledHost:
    """A TCP server on loopback that accepts connections and never answers."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> StalledHost:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        # The server's pulls then fail at once (reset, then refused) instead of timing out.
        self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for connection in self._accepted:
            connection.close()

    def url(self) -> str:
        return f"http://127.0.0.1:{self._listener.getsockname()[1]}/model.gguf"

    def _accept(self) -> None:
        while True:
            try:
                self._accepted.append(self._listener.accept()[0])
            except OSError:
                return


def send(server: Server, call: Any, *args: Any, **kwargs: Any) -> httpx.Response:
    """`call(*args, **kwargs)`; a connection the server dropped fails with its state and log."""
    try:
        return call(*args, **kwargs)
    except httpx.TransportError as err:
        code = server.process.poll()
        state = "alive" if code is None else f"exited with {code}"
        pytest.fail(f"no answer ({err!r}); the server {state}:\n{server.log_text()[-3000:]}")
