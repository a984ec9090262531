"""Several models in one real `owl serve`: load on demand, keep_alive, the memory budget,
`owl ps` and `owl stop`.

The second model is the bundled SmolLM2 pulled again under the name 'twin': another model
to the server (its own entry, its own llama.cpp context), loaded as fast as the first.
Waits poll /api/ps with a deadline; nothing sleeps longer than the behaviour needs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from owl.config import Settings
from owl.errors import NoRoomForModel
from owl.pull import register_embedded
from owl.server.pool import SWEEP_EVERY_S, ModelPool
from owl.store import Store
from tests.support.cli import owl
from tests.support.owl_server import SERVER_CTX, Server, running_server

pytestmark = pytest.mark.slow

TWIN = "twin"
POLL_DEADLINE_S = 15.0
SHORT = {"temperature": 0, "num_predict": 4}
# Long enough that a stream is still open while the test looks at /api/ps.
LONG = {"temperature": 0, "num_predict": 64}


def _serve(root: Path, bundled_gguf: Path, env: dict[str, str]) -> Iterator[Server]:
    pulled = owl(root / "owl-home", "pull", str(bundled_gguf), "--name", TWIN)
    assert pulled.returncode == 0, pulled.stderr
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        with running_server(root) as running:
            yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Iterator[Server]:
    """Default keep_alive and limits, but for the sweep-driven expiry tests below."""
    yield from _serve(tmp_path_factory.mktemp("pool"), bundled_gguf, {})


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as client:
        yield client


def _loaded(http: httpx.Client) -> dict[str, dict[str, Any]]:
    response = http.get("/api/ps")
    assert response.status_code == 200, response.text
    return {model["name"].removesuffix(":latest"): model for model in response.json()["models"]}


def _wait_until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + POLL_DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {POLL_DEADLINE_S}s"
        time.sleep(0.1)


def _expires(model: dict[str, Any]) -> timedelta:
    moment = datetime.fromisoformat(model["expires_at"].replace("Z", "+00:00"))
    return moment - datetime.now(UTC)


def _load(http: httpx.Client, name: str, **extra: Any) -> dict[str, Any]:
    response = http.post("/api/generate", json={"model": name, **extra})
    assert response.status_code == 200, response.text
    return response.json()


def _unload(http: httpx.Client, name: str) -> dict[str, Any]:
    response = http.post("/api/chat", json={"model": name, "messages": [], "keep_alive": 0})
    assert response.status_code == 200, response.text
    return response.json()


@contextmanager
def _open_stream(http: httpx.Client, name: str, **extra: Any) -> Iterator[Iterator[dict]]:
    """A streaming /api/generate whose first chunk has arrived: the model is in use.

    The engine generates ahead of its reader, so the stream is in use only while tokens
    are still being made: a format that allows the end only after 1500 characters keeps
    the model at it for several seconds, however fast the machine.
    """
    body = {
        "model": name,
        "prompt": "Count from one to a hundred.",
        "options": {**LONG, "num_predict": 400},
        "format": {"type": "string", "minLength": 1500},
        **extra,
    }
    with http.stream("POST", "/api/generate", json=body) as response:
        assert response.status_code == 200
        lines = (json.loads(line) for line in response.iter_lines() if line)
        first = next(lines)
        assert "error" not in first, first
        yield lines


def test_two_models_load_on_demand_and_ps_lists_both_with_their_expiry(
    http: httpx.Client, bundled_gguf: Path
) -> None:
    assert _load(http, "smollm2")["done_reason"] == "load"
    assert _load(http, TWIN, keep_alive=-1)["done_reason"] == "load"
    loaded = _loaded(http)
    assert set(loaded) == {"smollm2", TWIN}
    # The default keep_alive is Ollama's, 5 minutes; -1 is "forever" (~292 years on).
    assert timedelta(minutes=4) < _expires(loaded["smollm2"]) <= timedelta(minutes=5)
    assert _expires(loaded[TWIN]) > timedelta(days=100 * 365)
    for model in loaded.values():
        assert model["size"] > bundled_gguf.stat().st_size  # weights plus the KV cache
        assert model["size_vram"] == 0
        assert model["context_length"] == SERVER_CTX
        assert len(model["digest"]) == 64
    # The OpenAI route uses the pool too: the default keep_alive applies again.
    response = http.post(
        "/v1/completions", json={"model": TWIN, "prompt": "Hello", "max_tokens": 2}
    )
    assert response.status_code == 200, response.text
    assert _expires(_loaded(http)[TWIN]) <= timedelta(minutes=5)


def test_a_request_keep_alive_unloads_the_model_once_it_passes(http: httpx.Client) -> None:
    body = {"model": TWIN, "prompt": "Hi", "options": SHORT, "stream": False, "keep_alive": "1s"}
    response = http.post("/api/generate", json=body)
    assert response.status_code == 200 and response.json()["done"], response.text
    twin = _loaded(http).get(TWIN)  # absent if the machine was slow to ask
    assert twin is None or _expires(twin) <= timedelta(seconds=1)
    _wait_until(lambda: TWIN not in _loaded(http), "unloaded after its 1s keep_alive")
    assert "smollm2" in _loaded(http)  # the other model keeps its own keep_alive


def test_keep_alive_0_with_no_prompt_unloads_as_ollama_does(http: httpx.Client) -> None:
    _load(http, TWIN)
    answer = _unload(http, TWIN)
    assert answer["done"] is True and answer["done_reason"] == "unload"
    assert answer["message"] == {"role": "assistant", "content": ""}
    assert TWIN not in _loaded(http)  # idle: unloaded before the answer
    # A model that is not loaded: nothing to do, the same answer; an unknown one: 404.
    assert _unload(http, TWIN)["done_reason"] == "unload"
    missing = http.post("/api/generate", json={"model": "no-such-model", "keep_alive": 0})
    assert missing.status_code == 404 and "no-such-model" in missing.json()["error"]


def test_a_model_with_an_open_stream_stays_loaded_until_the_stream_ends(
    http: httpx.Client,
) -> None:
    # keep_alive 0: unload right after the request; the request lasts as long as its stream.
    with _open_stream(http, TWIN, keep_alive=0) as rest:
        time.sleep(1.5)  # more than one sweep (every second)
        assert TWIN in _loaded(http)
        stopped = http.delete(f"/api/ps/{TWIN}")
        assert stopped.status_code == 200
        assert stopped.json()["unloading"] == [TWIN] and stopped.json()["unloaded"] == []
        assert TWIN in _loaded(http)
        chunks = list(rest)  # the stream runs to its end, uncut
    assert chunks[-1]["done"] is True and chunks[-1]["done_reason"] in ("stop", "length")
    assert not any("error" in chunk for chunk in chunks)
    _wait_until(lambda: TWIN not in _loaded(http), "unloaded once its stream ended")


def test_owl_ps_and_owl_stop_talk_to_the_running_server(http: httpx.Client, server: Server) -> None:
    _load(http, "smollm2")
    port = server.base.rsplit(":", 1)[1]
    table = owl(server.home, "ps", "--port", port)
    assert table.returncode == 0, table.stderr
    assert "smollm2:latest" in table.stdout and "100% CPU" in table.stdout
    listed = owl(server.home, "ps", "--json", "--port", port)
    assert listed.returncode == 0, listed.stderr
    assert "smollm2:latest" in {model["name"] for model in json.loads(listed.stdout)["models"]}

    stopped = owl(server.home, "stop", "smollm2", "--port", port)
    assert stopped.returncode == 0, stopped.stderr
    assert "unloaded smollm2" in stopped.stdout
    assert "smollm2" not in _loaded(http)
    again = owl(server.home, "stop", "smollm2", "--port", port)
    assert again.returncode == 1 and "not loaded" in again.stderr and "owl ps" in again.stderr


def test_a_model_larger_than_the_memory_budget_is_refused_before_loading(
    settings: Settings, store: Store, bundled_gguf: Path
) -> None:
    register_embedded(store, settings)
    budget = bundled_gguf.stat().st_size  # the file fits; with its cache and margin it does not
    pool = ModelPool(settings.model_copy(update={"max_memory": budget}), store)
    with pytest.raises(NoRoomForModel, match="OWL_MAX_MEMORY") as refused:
        asyncio.run(pool.get("smollm2"))
    assert "smollm2" in str(refused.value) and pool.loaded() == []


def test_a_request_holds_its_model_until_it_ends_also_before_it_generates(
    settings: Settings, store: Store
) -> None:
    # No generation is queued yet (the scheduler is idle), so only the request's own hold
    # keeps a keep_alive-0 model loaded across a sweep.
    register_embedded(store, settings)
    small = settings.model_copy(update={"ctx": 256, "threads": 1, "parallel": 1})
    pool = ModelPool(small, store)

    async def request() -> list[str]:
        await pool.get("smollm2", keep_alive=0)
        await asyncio.sleep(SWEEP_EVERY_S * 1.5)  # e.g. tokenizing a long prompt
        return pool.loaded()

    async def scenario() -> tuple[list[str], list[str]]:
        during = await asyncio.create_task(request())
        deadline = time.monotonic() + POLL_DEADLINE_S
        while pool.loaded() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return during, pool.loaded()

    try:
        during, after = asyncio.run(scenario())
    finally:
        pool.close()
    assert during == ["smollm2"]
    assert after == []  # keep_alive 0: unloaded once the request ended


def test_settings_read_ollama_durations_and_memory_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OWL_KEEP_ALIVE", "1m30s")
    monkeypatch.setenv("OWL_MAX_MEMORY", "8GB")
    monkeypatch.setenv("OWL_LOAD_WAIT", "500ms")
    settings = Settings()
    assert (settings.keep_alive, settings.max_memory, settings.load_wait) == (90, 8 << 30, 0.5)
    monkeypatch.setenv("OWL_KEEP_ALIVE", "-1")
    assert Settings().keep_alive == -1  # forever
    monkeypatch.setenv("OWL_KEEP_ALIVE", "5 minutes")
    with pytest.raises(ValueError, match="not a duration"):
        Settings()


def test_owl_ps_says_when_no_server_is_running(tmp_path: Path) -> None:
    result = owl(tmp_path, "ps", "--port", "9")  # the discard port: nothing listens
    assert result.returncode == 1
    assert "no owl server at http://127.0.0.1:9" in result.stderr
    assert "owl serve" in result.stderr and "Traceback" not in result.stderr


# --- one model at a time (OWL_MAX_LOADED=1) ----------------------------------------------


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Iterator[Server]:
    env = {"OWL_MAX_LOADED": "1", "OWL_LOAD_WAIT": "1s"}
    yield from _serve(tmp_path_factory.mktemp("pool-single"), bundled_gguf, env)


def test_with_room_for_one_model_the_idle_one_makes_way(single: Server) -> None:
    with httpx.Client(base_url=single.base, timeout=120) as http:
        _load(http, "smollm2")
        assert set(_loaded(http)) == {"smollm2"}
        _load(http, TWIN)
        assert set(_loaded(http)) == {TWIN}

        # A model in use is never unloaded for another: the load waits (OWL_LOAD_WAIT),
        # then answers 503 with what to do.
        with _open_stream(http, TWIN) as rest:
            refused = http.post("/api/generate", json={"model": "smollm2"})
            assert refused.status_code == 503, refused.text
            error = refused.json()["error"]
            assert "in use" in error and "OWL_MAX_LOADED" in error
            assert set(_loaded(http)) == {TWIN}
            chunks = list(rest)
        assert chunks[-1]["done"] is True
        _load(http, "smollm2")  # now idle, the twin makes way
        assert set(_loaded(http)) == {"smollm2"}


def test_an_embedder_counts_against_the_limits_as_any_model(single: Server) -> None:
    # OWL_MAX_LOADED=1: an embedder is a loaded model like the others, in the one pool.
    with httpx.Client(base_url=single.base, timeout=120) as http:
        _load(http, TWIN)
        assert set(_loaded(http)) == {TWIN}
        embedded = http.post("/api/embed", json={"model": "smollm2", "input": "hello"})
        assert embedded.status_code == 200, embedded.text
        models = http.get("/api/ps").json()["models"]
        assert [model["name"] for model in models] == ["smollm2:latest"]  # the twin made way

        # An embedder in use is not unloaded for another model, and a busy model is not
        # unloaded for an embedder: the load waits (OWL_LOAD_WAIT), then answers 503.
        _load(http, TWIN)
        with _open_stream(http, TWIN) as rest:
            refused = http.post("/api/embed", json={"model": "smollm2", "input": "hello"})
            assert refused.status_code == 503, refused.text
            assert "OWL_MAX_LOADED" in refused.json()["error"]
            chunks = list(rest)
        assert chunks[-1]["done"] is True
        again = http.post("/v1/embeddings", json={"model": "smollm2", "input": "hello"})
        assert again.status_code == 200, again.text
        assert set(_loaded(http)) == {"smollm2"}


def test_an_embedder_over_the_memory_budget_is_refused_before_loading(
    settings: Settings, store: Store, bundled_gguf: Path
) -> None:
    register_embedded(store, settings)
    budget = bundled_gguf.stat().st_size  # the file fits; with its cache and margin it does not
    pool = ModelPool(settings.model_copy(update={"max_memory": budget}), store)
    with pytest.raises(NoRoomForModel, match="OWL_MAX_MEMORY") as refused:
        asyncio.run(pool.embedder("smollm2"))
    assert "smollm2" in str(refused.value) and pool.loaded() == []
