"""Hostile and careless requests against a real `owl serve` (issue 12, one test per item).

No request or schema may crash, freeze or starve the server: each bad input gets a 4xx in
its API's error shape, and the server answers the next request — a crash shows as the
process gone. The servers' logs are checked for tracebacks and 500s when they stop
(tests/support/owl_server.py). Pulls: test_hostile_pulls.py.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import httpx
import pytest

from tests.support.hostile import (
    COUNTING,
    HI,
    LOAD_PROOF_S,
    MODEL,
    OLLAMA_BODY_ROUTES,
    assert_alive,
    error_of,
    post_raw,
    send,
    slots,
    wait_for_slots,
)
from tests.support.owl_server import Server, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def narrow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One slot, two places in the queue, a context long enough for a long generation."""
    args = ["--parallel", "1", "--max-queue", "2", "--ctx", "2048"]
    with running_server(tmp_path_factory.mktemp("narrow"), args=args) as running:
        yield running


def schema_request(api: str, schema: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if api == "openai":
        form = {"type": "json_schema", "json_schema": {"name": "hostile", "schema": schema}}
        body = {"model": MODEL, "messages": HI, "max_tokens": 1, "response_format": form}
        return "/v1/chat/completions", body
    body = {"model": MODEL, "messages": HI, "stream": False, "format": schema}
    return "/api/chat", {**body, "options": {"num_predict": 1}}


def nested(depth: int) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    for _ in range(depth):
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


INTEGERS = {"type": "array", "items": {"type": "integer"}}
# (schema, the keyword the 400 must name): each bound becomes a grammar repetition.
GRAMMAR_BOMBS = {
    "maxLength": ({"type": "string", "maxLength": 30000}, "maxLength"),  # the segfault
    "minLength": ({"type": "string", "minLength": 30000}, "minLength"),
    "pattern": ({"type": "string", "pattern": "^a{1,30000}$"}, "pattern"),
    "maxItems": ({**INTEGERS, "maxItems": 30000}, "maxItems"),
    "minItems": ({**INTEGERS, "minItems": 200_000}, "minItems"),  # item 2: 500 today
    "nesting": (nested(200), None),
}
APIS = ["openai", "ollama"]


# 1 and 2: a JSON schema that becomes a huge grammar.
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize(("schema", "keyword"), GRAMMAR_BOMBS.values(), ids=GRAMMAR_BOMBS)
def test_a_schema_whose_grammar_would_be_huge_is_400(
    server: Server, http: httpx.Client, api: str, schema: dict, keyword: str | None
) -> None:
    path, body = schema_request(api, schema)
    response = send(server, http.post, path, json=body)
    assert response.status_code == 400, response.text[:500]
    if keyword is not None:
        assert keyword in error_of(path, response)
    assert_alive(server)


def test_a_grammar_of_millions_of_items_is_400_and_health_answers_meanwhile(
    server: Server,
) -> None:
    # minItems 20,000,000 took the event loop for 10 s. Whether the server refuses it at
    # once or works on it off the loop, /health answers every time it is asked while any of
    # these is in flight; a loop held for longer than the load-proof timeout fails it.
    requests = [schema_request(api, {**INTEGERS, "minItems": 20_000_000}) for api in APIS * 2]
    health: list[int] = []
    with (
        httpx.Client(base_url=server.base, timeout=120) as http,
        ThreadPoolExecutor(len(requests)) as pool,
    ):
        hostile = [pool.submit(http.post, path, json=body) for path, body in requests]
        while True:
            in_flight = not all(future.done() for future in hostile)
            health.append(http.get("/health", timeout=LOAD_PROOF_S).status_code)
            if not in_flight:
                break
        answers = [
            (path, future.result()) for (path, _), future in zip(requests, hostile, strict=True)
        ]
    assert set(health) == {200}
    for path, response in answers:
        assert response.status_code == 400, response.text[:500]
        assert "minItems" in error_of(path, response)
    assert_alive(server)


# 4: a request refused 429 must not leave some of its n choices admitted and generating.
def test_a_request_refused_429_runs_none_of_its_choices(narrow: Server) -> None:
    long = {"model": MODEL, "prompt": COUNTING, "temperature": 0, "max_tokens": 1500}
    with httpx.Client(base_url=narrow.base, timeout=120) as http:
        assert http.post("/v1/completions", json={**long, "max_tokens": 1}).status_code == 200
        with http.stream("POST", "/v1/completions", json={**long, "stream": True}) as busy:
            lines = busy.iter_lines()
            next(lines)  # it holds the one slot; the queue has room for 2, not for 8
            many = {"model": MODEL, "messages": HI, "n": 8, "max_tokens": 1000}
            refused = http.post("/v1/chat/completions", json=many)
            running, waiting, _ = slots(http)
    assert refused.status_code == 429, refused.text[:500]
    assert refused.json()["error"]["code"] == "server_busy"
    assert (running, waiting) == (1, 0), "choices of the refused request were admitted"
    assert_alive(narrow)


# 5: a non-streaming request whose client left is cancelled; null max_tokens is the default.
def test_a_non_streaming_request_stops_when_its_client_leaves(narrow: Server) -> None:
    budget = 1800  # far more than the few tokens made before the server sees the client go
    body = json.dumps(
        {"model": MODEL, "prompt": COUNTING, "temperature": 0, "max_tokens": budget}
    ).encode()
    host, port = narrow.base.removeprefix("http://").split(":")
    with httpx.Client(base_url=narrow.base, timeout=LOAD_PROOF_S) as http:
        wait_for_slots(http, lambda busy, waiting: busy + waiting == 0, "idle before")
        before = slots(http)[2]
        with socket.create_connection((host, int(port))) as client:
            head = f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\n"
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            client.sendall(head.encode() + body)
            wait_for_slots(http, lambda busy, waiting: busy == 1, "the request never started")
        # The client is gone. A generation that runs on regardless makes all `budget` tokens.
        after = wait_for_slots(http, lambda busy, waiting: busy + waiting == 0, "not stopped")
    assert after[2] - before < budget / 2, "the generation ran on after its client left"
    assert_alive(narrow)


@pytest.mark.parametrize("stream", [False, True])
def test_completions_with_null_max_tokens_make_the_default_16(
    http: httpx.Client, stream: bool
) -> None:
    body = {"model": MODEL, "prompt": COUNTING, "temperature": 0, "max_tokens": None}
    body |= {"stream": stream, "stream_options": {"include_usage": True}} if stream else {}
    response = http.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text[:500]
    if stream:
        events = [line[6:] for line in response.text.splitlines() if line.startswith("data: {")]
        usage = json.loads(events[-1])["usage"]
    else:
        usage = response.json()["usage"]
    assert 0 < usage["completion_tokens"] <= 16


def surrogate_requests() -> dict[str, tuple[str, dict[str, Any]]]:
    """Requests with a lone surrogate in each text field, by name; streamed where they can."""
    high, low = "\ud800", "\udc00"
    chat = {"model": MODEL, "max_tokens": 2}
    ollama = {"model": MODEL, "options": {"num_predict": 2}}
    user = [{"role": "user", "content": f"hi {high}"}]
    system = [{"role": "system", "content": low}, *HI]
    generating = {
        "openai-chat-content": ("/v1/chat/completions", {**chat, "messages": user}),
        "openai-chat-system": ("/v1/chat/completions", {**chat, "messages": system}),
        "openai-stop": ("/v1/chat/completions", {**chat, "messages": HI, "stop": [high]}),
        "openai-prompt": ("/v1/completions", {**chat, "prompt": high}),
        "ollama-chat-content": ("/api/chat", {**ollama, "messages": user}),
        "ollama-prompt": ("/api/generate", {**ollama, "prompt": high}),
        "ollama-system": ("/api/generate", {**ollama, "prompt": "hi", "system": low}),
        "ollama-keep-alive": ("/api/generate", {**ollama, "prompt": "hi", "keep_alive": high}),
    }
    cases = {
        f"{name}-{'stream' if stream else 'whole'}": (path, {**body, "stream": stream})
        for name, (path, body) in generating.items()
        for stream in (False, True)
    }
    return cases | {
        "openai-input": ("/v1/embeddings", {"model": MODEL, "input": high}),
        "ollama-input": ("/api/embed", {"model": MODEL, "input": [low]}),
        "ollama-embeddings-prompt": ("/api/embeddings", {"model": MODEL, "prompt": high}),
        "ollama-model": ("/api/show", {"model": high}),
        "ollama-pull": ("/api/pull", {"model": f"hf:a/b{high}/c.gguf", "stream": False}),
    }


SURROGATES = surrogate_requests()


# 6: lone surrogates in any text, and the kept-alive connection still works after.
@pytest.mark.parametrize(("path", "body"), SURROGATES.values(), ids=SURROGATES)
def test_a_lone_surrogate_is_refused_or_served_never_500(
    server: Server, path: str, body: dict[str, Any]
) -> None:
    raw = json.dumps(body).encode()  # ensure_ascii: the escape itself, as a client sends it
    assert b"\\ud800" in raw or b"\\udc00" in raw
    with httpx.Client(base_url=server.base, timeout=120) as http:  # one kept-alive connection
        response = post_raw(http, path, raw)
        port = local_port(response)
        assert response.status_code in (200, 400, 404, 422), response.text[:500]
        assert "UnicodeEncodeError" not in response.text
        assert "internal error" not in response.text
        if response.status_code != 200:
            error_of(path, response)
        after = http.get("/api/version" if path.startswith("/api/") else "/v1/models")
        assert after.is_success
        # Over the same connection: a server that drops it after an error makes the next
        # request of a client that reuses it fail (ECONNRESET).
        assert local_port(after) == port, response.headers
    assert_alive(server)


def local_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


DEPTH = 100_000
DEEP_BODIES = {
    "arrays": b"[" * DEPTH + b"]" * DEPTH,
    "objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "in-a-field": b'{"model":"smollm2","messages":' + b"[" * DEPTH + b"]" * DEPTH + b"}",
}
ROUTES = [
    *OLLAMA_BODY_ROUTES,
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
]


# 7: JSON nested 100,000 deep, as the body or inside it.
@pytest.mark.parametrize("raw", DEEP_BODIES.values(), ids=DEEP_BODIES)
@pytest.mark.parametrize("path", ROUTES)
def test_deeply_nested_json_is_400(
    server: Server, http: httpx.Client, path: str, raw: bytes
) -> None:
    response = post_raw(http, path, raw)
    assert response.status_code == 400, response.text[:500]
    assert "RecursionError" not in error_of(path, response)
    assert server.process.poll() is None


KEEP_ALIVES = {
    "1e308": b"1e308",
    "-1e308": b"-1e308",
    "1e400": b"1e400",  # past a double: Python's json reads it as inf
    "Infinity-token": b"Infinity",
    "-Infinity-token": b"-Infinity",
    "NaN-token": b"NaN",
    "Infinity": b'"Infinity"',
    "NaN": b'"NaN"',
    "9999999999h": b'"9999999999h"',
    "-9999999999h": b'"-9999999999h"',
    "huge-int": str(10**400).encode(),
}


# 8: keep_alive values that overflow datetimes or compare false with everything.
@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
@pytest.mark.parametrize("keep_alive", KEEP_ALIVES.values(), ids=KEEP_ALIVES)
def test_an_extreme_keep_alive_is_refused_or_clamped(
    server: Server, http: httpx.Client, path: str, keep_alive: bytes
) -> None:
    # No prompt, no messages: the model is only loaded, with this keep_alive.
    raw = b'{"model":"smollm2","stream":false,"keep_alive":' + keep_alive + b"}"
    response = post_raw(http, path, raw)
    assert response.status_code in (200, 400), response.text[:500]
    if response.status_code == 400:
        assert "keep_alive" in error_of(path, response)
    ps = http.get("/api/ps")
    assert ps.status_code == 200, ps.text[:500]
    for model in ps.json()["models"]:
        datetime.fromisoformat(model["expires_at"].replace("Z", "+00:00"))
    assert_alive(server)


# 14: error `param`s name the request's own fields, never pydantic's union members.
PARAMS = {
    "stop": ("/v1/chat/completions", {"messages": HI, "stop": 5}, "stop"),
    "tool_choice": (
        "/v1/chat/completions",
        {"messages": HI, "tool_choice": "bogus"},
        "tool_choice",
    ),
    "content": (
        "/v1/chat/completions",
        {"messages": [{"role": "user", "content": 5}]},
        "messages.0.content",
    ),
    "prompt": ("/v1/completions", {"prompt": {"a": 1}}, "prompt"),
    "input": ("/v1/embeddings", {"input": {"a": 1}}, "input"),
    "ollama-stop": ("/api/generate", {"prompt": "hi", "options": {"stop": 5}}, "options.stop"),
}
PYDANTIC_INTERNALS = ("literal[", "list[", "dict[", "function-", ".str", ".int", "union[")


@pytest.mark.parametrize(("path", "body", "param"), PARAMS.values(), ids=PARAMS)
def test_an_error_names_the_field_as_the_client_wrote_it(
    http: httpx.Client, path: str, body: dict[str, Any], param: str
) -> None:
    response = http.post(path, json={"model": MODEL, **body})
    assert response.status_code == 400, response.text[:500]
    message = error_of(path, response)
    assert param in message
    if not path.startswith("/api/"):
        assert response.json()["error"]["param"] == param
    for internal in PYDANTIC_INTERNALS:
        assert internal not in message.lower()


NUMBERS = {  # raw JSON, since json.dumps writes NaN but httpx refuses to
    "temperature-NaN": ("/v1/chat/completions", b'"temperature":NaN', "temperature"),
    "top_p-NaN": ("/v1/chat/completions", b'"top_p":NaN', "top_p"),
    "top_k-2**63": ("/v1/chat/completions", b'"top_k":%d' % 2**63, "top_k"),
    "ollama-temperature-NaN": ("/api/chat", b'"options":{"temperature":NaN}', "temperature"),
    "ollama-top_k-2**63": ("/api/chat", b'"options":{"top_k":%d}' % 2**63, "top_k"),
}


@pytest.mark.parametrize(("path", "field", "name"), NUMBERS.values(), ids=NUMBERS)
def test_nan_and_huge_numbers_are_400_saying_what_is_wrong(
    http: httpx.Client, path: str, field: bytes, name: str
) -> None:
    messages = json.dumps(HI).encode()
    raw = b'{"model":"smollm2","stream":false,"max_tokens":1,"messages":%s,%s}' % (messages, field)
    response = post_raw(http, path, raw)
    assert response.status_code == 400, response.text[:500]
    message = error_of(path, response)
    assert name in message
    if b"NaN" in field:  # NaN is not too big: every comparison with it is false
        assert "less than or equal" not in message and "≤" not in message


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", ["/api/generate", "/api/chat"])
def test_ollama_replies_name_the_model_resolved(
    http: httpx.Client, path: str, stream: bool
) -> None:
    body = {"model": " smollm2 ", "stream": stream, "options": {"num_predict": 2}}
    body |= {"messages": HI} if path == "/api/chat" else {"prompt": "hi"}
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text[:500]
    for line in response.text.splitlines():
        assert json.loads(line)["model"] in ("smollm2", "smollm2:latest")


def test_a_flat_schema_with_thousands_of_properties_is_not_too_deep(http: httpx.Client) -> None:
    properties = {f"p{i}": {"type": "string"} for i in range(3300)}
    path, body = schema_request("openai", {"type": "object", "properties": properties})
    response = http.post(path, json=body)
    assert response.status_code in (200, 400), response.text[:500]
    if response.status_code == 400:
        assert "nests too deeply" not in error_of(path, response)


MALFORMED = {
    "garbage": b"GARBAGE\r\n\r\n",
    "binary": b"\x00\xff\xfe\x80" * 64 + b"\r\n\r\n",
    "version": b"GET / HTTP/9.9\r\n\r\n",
    "length": b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "two-lengths": b"POST /api/generate HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
    b"Content-Length: 2\r\n\r\n{}",
    "chunks": b"POST /api/generate HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\n{}\r\n0\r\n\r\n",
    "long-line": b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header": b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
}


@pytest.mark.parametrize("payload", MALFORMED.values(), ids=MALFORMED)
def test_malformed_http_gets_an_answer_or_a_close(server: Server, payload: bytes) -> None:
    host, port = server.base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=LOAD_PROOF_S) as raw:
        try:
            raw.sendall(payload)
        except OSError:
            pass  # refused mid-send: a closed connection is an answer too
        reply = b""
        try:
            while b"\r\n\r\n" not in reply and (chunk := raw.recv(65536)):
                reply += chunk  # up to the end of the status line and headers, or the close
        except ConnectionResetError:
            pass
    # Either way no 5xx: the server stays up, and nothing of it was broken by the bytes.
    assert reply == b"" or reply[:10] in (b"HTTP/1.1 2", b"HTTP/1.1 4"), reply[:300]
    assert_alive(server)


def test_a_corrupt_manifest_is_reported_without_the_servers_paths(
    tmp_path: Any,
) -> None:
    # A damaged store is the server's fault, so a 500 — but one that keeps its paths in its log.
    with running_server(tmp_path, answers_500=True) as server:
        broken = server.home / "manifests" / "broken" / "latest.json"
        broken.parent.mkdir(parents=True)
        broken.write_text("{not json")
        with httpx.Client(base_url=server.base, timeout=120) as http:
            answers = {
                "/api/show": http.post("/api/show", json={"model": "broken"}),
                "/api/generate": http.post("/api/generate", json={"model": "broken"}),
                "/v1/models/broken": http.get("/v1/models/broken"),
            }
        for path, response in answers.items():
            assert response.status_code == 500, response.text[:500]
            message = error_of(path, response)
            assert str(server.home) not in message and "manifests/" not in message, message
            assert "owl verify" in message
        assert_alive(server)
    assert str(broken) in server.log_text(), "the operator's log names the damaged file"
