"""`"stream": true` on /v1/images/generations against a real `owl serve`: owl's progress
event after every step, then OpenAI's completed event per image with the same pixels as
the answer without a stream; bad input is a 400 before any stream starts; a client that
leaves mid-stream stops the drawing."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from tests.server.conftest import Server
from tests.support.openai_client import make_client
from tests.support.tiny_diffusion import ENDLESS_STEPS as ENDLESS
from tests.support.tiny_diffusion import TINY_SD as MODEL
from tests.support.tiny_diffusion import tiny_sd_server

pytestmark = pytest.mark.slow  # the server loads a diffusers pipeline


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with tiny_sd_server(tmp_path_factory.mktemp("serve-draw-stream")) as up:
        yield up


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as raw:
        yield raw


def _events(response: httpx.Response) -> Iterator[tuple[str, dict]]:
    name = None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield name or "", json.loads(line.removeprefix("data: "))
            name = None


def _request(**fields: object) -> dict:
    return {"model": MODEL, "prompt": "a cat", "size": "32x32", "stream": True, **fields}


def test_progress_reaches_every_step_then_each_image_completes(http: httpx.Client) -> None:
    with http.stream("POST", "/v1/images/generations", json=_request(seed=7, steps=3, n=2)) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = list(_events(r))
    names = [name for name, _ in events]
    assert names == ["image_generation.progress"] * 3 + ["image_generation.completed"] * 2
    assert [(data["step"], data["steps"]) for _, data in events[:3]] == [(1, 3), (2, 3), (3, 3)]
    assert all(data["type"] == name for name, data in events)
    completed = [data for _, data in events[3:]]
    assert [(data["index"], data["seed"], data["size"]) for data in completed] == [
        (0, 7, "32x32"),
        (1, 8, "32x32"),
    ]
    plain = http.post(
        "/v1/images/generations", json={**_request(seed=7, steps=3, n=2), "stream": False}
    )
    assert plain.status_code == 200, plain.text
    assert [item["b64_json"] for item in plain.json()["data"]] == [
        data["b64_json"] for data in completed
    ]


def test_the_openai_client_reads_the_stream(server: Server) -> None:
    client = make_client(server)
    stream = client.images.generate(
        model=MODEL, prompt="a cat", size="32x32", stream=True, extra_body={"seed": 1, "steps": 2}
    )
    events = list(stream)
    assert [event.type for event in events] == [
        "image_generation.progress",
        "image_generation.progress",
        "image_generation.completed",
    ]
    assert events[-1].b64_json and events[-1].size == "32x32"


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"size": "big"}, "WIDTHxHEIGHT"),
        ({"steps": 0}, "steps"),
        ({"n": 3}, "OWL_MAX_DRAW_IMAGES"),
        ({"prompt": " "}, "empty"),
        ({"response_format": "url"}, "b64_json"),
        ({"model": "no-such-model"}, "no-such-model"),
    ],
)
def test_bad_input_is_an_error_answer_before_any_stream(
    http: httpx.Client, fields: dict, words: str
) -> None:
    answer = http.post("/v1/images/generations", json=_request(**fields))
    assert answer.status_code in (400, 404), answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert words in answer.text, answer.text


def test_a_client_that_leaves_mid_stream_stops_the_drawing(
    http: httpx.Client, server: Server
) -> None:
    with http.stream("POST", "/v1/images/generations", json=_request(steps=ENDLESS)) as r:
        for name, data in _events(r):
            assert name == "image_generation.progress"
            if data["step"] == 2:
                break  # and the connection closes
    # One drawing at a time: this one draws only once the endless one has stopped.
    after = http.post("/v1/images/generations", json={**_request(steps=1), "stream": False})
    assert after.status_code == 200, after.text
    assert f"a drawing with '{MODEL}' stopped: its client left" in server.log_text()
