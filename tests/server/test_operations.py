"""Server operations against a real `owl serve`: API keys, CORS, /metrics, limits, shutdown."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.owl_server import Server, running_server

pytestmark = pytest.mark.slow

MODEL = "smollm2"
KEY = "test-key-1"
ALLOWED = "http://allowed.example"
MAX_TOKENS = 400
MAX_BODY = 64 * 1024
# A prompt the model keeps continuing: streams that stay open long enough to queue behind.
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8,"
LONG = {"model": MODEL, "prompt": COUNTING, "temperature": 0, "max_tokens": 300, "stream": True}
AUTH = {"Authorization": f"Bearer {KEY}"}
HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = [
        "--api-key",
        KEY,
        "--api-key",
        "test-key-2",
        "--cors-origin",
        ALLOWED,
        "--parallel",
        "1",
        "--max-queue",
        "1",
        "--max-tokens",
        str(MAX_TOKENS),
        "--max-body",
        str(MAX_BODY),
    ]
    with running_server(tmp_path_factory.mktemp("ops"), args=args) as running:
        yield running


def _client(server: Server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base}/v1", api_key=key, max_retries=0, timeout=120)


def test_a_key_is_required_except_for_health(server: Server, http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200
    assert http.get("/").status_code == 200  # Ollama's liveness probe

    missing = http.get("/v1/models")
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert "Authorization: Bearer" in missing.json()["error"]["message"]
    ollama = http.get("/api/tags", headers={"Authorization": "Bearer wrong"})
    assert ollama.status_code == 401
    assert set(ollama.json()) == {"error"}
    assert http.get("/metrics").status_code == 401

    with pytest.raises(openai.AuthenticationError) as caught:
        _client(server, "wrong-key").models.list()
    assert caught.value.code == "invalid_api_key"
    assert MODEL in [model.id for model in _client(server, KEY).models.list()]
    assert http.get("/api/tags", headers={"x-api-key": "test-key-2"}).status_code == 200
    assert KEY not in server.log_text()


def test_cors_preflight_from_an_allowed_origin_only(http: httpx.Client) -> None:
    def preflight(origin: str) -> httpx.Response:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        }
        return http.options("/v1/chat/completions", headers=headers)

    allowed = preflight(ALLOWED)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()

    other = preflight("http://evil.example")
    assert "access-control-allow-origin" not in other.headers
    simple = http.get("/v1/models", headers={**AUTH, "Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in simple.headers
    # An answer the page may read, the 401 included, carries the header for it.
    refused = http.get("/v1/models", headers={"Origin": ALLOWED})
    assert refused.status_code == 401
    assert refused.headers["access-control-allow-origin"] == ALLOWED


def _scrape(http: httpx.Client) -> dict[tuple[str, tuple], float]:
    response = http.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_count_requests_and_tokens(server: Server, http: httpx.Client) -> None:
    client = _client(server, KEY)
    client.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)  # loaded
    before = _scrape(http)
    reply = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=12, temperature=0)
    streamed = http.post(
        "/api/generate",
        headers=AUTH,
        json={"model": MODEL, "prompt": "Hi", "options": {"num_predict": 5}},
    )
    final = json.loads(streamed.text.strip().splitlines()[-1])
    after = _scrape(http)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after[key] - before.get(key, 0.0)

    assert reply.usage is not None and final["done"] is True
    prompt = reply.usage.prompt_tokens + final["prompt_eval_count"]
    completion = reply.usage.completion_tokens + final["eval_count"]
    assert grew("owl_prompt_tokens_total", model=MODEL) == prompt
    assert grew("owl_completion_tokens_total", model=MODEL) == completion
    assert grew("owl_time_to_first_token_seconds_count", model=MODEL) == 2
    assert grew("owl_requests_total", route="/v1/chat/completions", status="200") == 1
    assert grew("owl_requests_total", route="/api/generate", status="200") == 1
    assert grew("owl_request_duration_seconds_count", route="/api/generate") == 1
    assert after[("owl_slots_total", (("model", MODEL),))] == 1
    assert after[("owl_slots_busy", (("model", MODEL),))] == 0
    assert after[("owl_queue_depth", (("model", MODEL),))] == 0


def test_a_body_over_the_limit_is_413_in_both_shapes(http: httpx.Client) -> None:
    big = {"model": MODEL, "prompt": "x" * MAX_BODY}
    openai_shape = http.post("/v1/completions", headers=AUTH, json=big)
    assert openai_shape.status_code == 413
    assert openai_shape.json()["error"]["code"] == "request_too_large"
    assert str(MAX_BODY) in openai_shape.json()["error"]["message"]

    def chunked() -> Iterator[bytes]:  # no Content-Length: the server must count
        yield json.dumps(big).encode()

    ollama_shape = http.post("/api/generate", headers=AUTH, content=chunked())
    assert ollama_shape.status_code == 413
    assert "OWL_MAX_BODY" in ollama_shape.json()["error"]


def test_max_tokens_over_the_cap_is_400(server: Server) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _client(server, KEY).completions.create(model=MODEL, prompt="Hi", max_tokens=MAX_TOKENS + 1)
    assert caught.value.code == "max_tokens_exceeded"
    assert str(MAX_TOKENS) in caught.value.message


# The engine generates ahead of its reader, so a stream stays busy only while tokens are
# still being made: a grammar that allows the end of text only after 800 characters keeps
# the model generating for a while, whatever it would rather say.
BUSY = {
    "model": MODEL,
    "messages": HI,
    "temperature": 0,
    "max_tokens": 400,
    "stream": True,
    "response_format": {
        "type": "json_schema",
        "json_schema": {"name": "long", "schema": {"type": "string", "minLength": 800}},
    },
}


def test_a_full_queue_is_429_with_retry_after(http: httpx.Client) -> None:
    # One slot, one place in the queue: the third concurrent stream is refused.
    with http.stream("POST", "/v1/chat/completions", headers=AUTH, json=BUSY) as first:
        assert first.status_code == 200
        # Kept in a name: a dropped line iterator closes the response (httpx), which would
        # end this generation at once.
        first_lines = first.iter_lines()
        next(first_lines)  # it is generating
        with http.stream("POST", "/v1/chat/completions", headers=AUTH, json=BUSY) as second:
            assert second.status_code == 200  # waiting for the slot
            queued = _scrape(http)
            third = http.post("/v1/completions", headers=AUTH, json=LONG)
    assert queued[("owl_slots_busy", (("model", MODEL),))] == 1
    assert queued[("owl_queue_depth", (("model", MODEL),))] == 1
    assert third.status_code == 429, third.text[:300]
    assert int(third.headers["retry-after"]) >= 1
    assert third.json()["error"]["code"] == "server_busy"
    # Closed streams free their places: the next request is served.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        again = http.post("/v1/completions", headers=AUTH, json={**LONG, "max_tokens": 1})
        if again.status_code != 429:
            break
        time.sleep(0.1)
    assert again.status_code == 200


def test_sigterm_is_bounded_with_generations_running_and_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One slot, a long context: one request generates, two wait, none streams. Unbounded,
    # these would run for minutes after SIGTERM; shutdown ends them all with their answers.
    monkeypatch.setenv("OWL_SHUTDOWN_TIMEOUT", "2")
    body = {"model": MODEL, "prompt": COUNTING, "temperature": 0, "max_tokens": 3500}
    args = ["--parallel", "1", "--ctx", "4096"]
    with running_server(tmp_path, args=args) as server:
        with httpx.Client(base_url=server.base, timeout=120) as http:
            with ThreadPoolExecutor(3) as pool:
                answers = [pool.submit(http.post, "/v1/completions", json=body) for _ in "abc"]
                waiting, deadline = 0.0, time.monotonic() + 60
                while waiting < 2:  # a gauge, polled: every request is in before the signal
                    assert time.monotonic() < deadline, "the requests never queued"
                    time.sleep(0.05)
                    samples = text_string_to_metric_families(http.get("/metrics").text)
                    waiting = sum(
                        sample.value
                        for family in samples
                        for sample in family.samples
                        if sample.name == "owl_queue_depth"
                    )
                server.process.send_signal(signal.SIGTERM)
                code = server.process.wait(timeout=60)  # minutes without the bound
                replies = [answer.result() for answer in answers]
    assert code == 0
    for reply in replies:
        assert reply.status_code == 200, reply.text[:300]
        choice = reply.json()["choices"][0]
        assert choice["finish_reason"] == "length"
        assert reply.json()["usage"]["completion_tokens"] < 3500


def test_sigterm_ends_open_streams_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWL_SHUTDOWN_TIMEOUT", "4")  # streams are stopped after 2 s
    long = {**LONG, "max_tokens": 450}
    raw = {"model": MODEL, "prompt": COUNTING, "raw": True, "options": {"num_predict": 450}}
    with running_server(tmp_path, args=["--parallel", "2"]) as server:
        with httpx.Client(base_url=server.base, timeout=60) as http:
            with (
                http.stream("POST", "/v1/completions", json=long) as sse,
                http.stream("POST", "/api/generate", json=raw) as ndjson,
            ):
                sse_lines = sse.iter_lines()
                ndjson_lines = ndjson.iter_lines()
                first = next(sse_lines)
                assert first.startswith("data: ")
                next(ndjson_lines)
                signalled = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                events = [line for line in sse_lines if line]
                lines = [json.loads(line) for line in ndjson_lines if line]
            code = server.process.wait(timeout=10)
            stopped = time.monotonic() - signalled
    assert code == 0
    assert stopped < 4 + 2
    assert events[-1] == "data: [DONE]"
    final = json.loads(events[-2].removeprefix("data: "))
    assert final["choices"][0]["finish_reason"] == "length"
    assert 0 < final["usage"]["completion_tokens"] < 450
    assert lines[-1]["done"] is True
    assert lines[-1]["done_reason"] == "length"
    assert 0 < lines[-1]["eval_count"] < 450
