"""owl.evals.models: an OpenAI-compatible endpoint — a real `owl serve` on loopback, and a
scripted HTTP server on loopback for what owl's own server never answers (429, no echo).

The endpoint's log-likelihoods are owl's server's echo (completions, max_tokens 0, logprobs);
they are compared with the engine model's on the same questions.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from owl.config import Settings
from owl.errors import EvalError
from owl.evals.models import EndpointModel, EngineModel, open_eval_model
from owl.evals.tasks.request import Request
from owl.pull import pull
from owl.store import Store
from tests.evals.test_models_engine import QUESTIONS
from tests.support.owl_server import SERVER_CTX, SERVER_THREADS, Server, running_server

KEY = "eval-test-key"
# The server's echo against the engine's Scorer, per choice (summed over its tokens).
# Measured 2026-12-04 on the embedded SmolLM2 (CPU, one thread, one request at a time):
# at most 1.4e-14, the order of float64 sums. The bound is the engine's own (the shared
# context against a plain decode): float32 rounding of a differently cut decode, no more.
# It holds because owl's server scores a prompt as the Scorer does whatever slot it lands
# in (the SERVER helper's fix for issue 18; before it, only the first slot matched).
PARITY = 1e-4


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("eval-serve"), env={"OWL_API_KEYS": KEY}) as up:
        yield up


@pytest.fixture(scope="module")
def engine_model(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineModel]:
    # The server's context and threads, so that both read the same windows.
    settings = Settings(
        home=tmp_path_factory.mktemp("eval-engine") / "owl-home",
        ctx=SERVER_CTX,
        threads=SERVER_THREADS,
    )
    store = Store(settings.home)
    pull("smollm2", store=store, settings=settings)
    opened = open_eval_model("smollm2", store=store, settings=settings)
    assert isinstance(opened, EngineModel)
    yield opened
    opened.close()


@pytest.fixture
def endpoint(server: Server, store: Store, settings: Settings) -> Iterator[EndpointModel]:
    opened = open_eval_model(
        "smollm2", store=store, settings=settings, endpoint=f"{server.base}/v1", api_key=KEY
    )
    assert isinstance(opened, EndpointModel)
    yield opened
    opened.close()


SCORED = [
    *(
        Request("loglikelihood", context, choice)
        for context, choices in QUESTIONS
        for choice in choices
    ),
    Request("loglikelihood_rolling", "The quick brown fox jumps over the lazy dog."),
]


@pytest.mark.slow
def test_the_endpoint_gives_the_engines_loglikelihoods(
    endpoint: EndpointModel, engine_model: EngineModel
) -> None:
    remote = endpoint.answer(SCORED)
    local = engine_model.answer(SCORED)
    assert endpoint.label == f"{endpoint.base}/smollm2" and endpoint.digest is None
    differences = []
    for request, theirs, ours in zip(SCORED, remote, local, strict=True):
        assert theirs.logprob is not None and ours.logprob is not None
        differences.append(abs(theirs.logprob - ours.logprob))
        assert differences[-1] <= PARITY, (request, theirs.logprob, ours.logprob)
        if request.kind == "loglikelihood":
            assert theirs.greedy is ours.greedy, request
        assert theirs.tokens > 0


@pytest.mark.slow
def test_the_endpoint_generates_as_the_engine_does(
    endpoint: EndpointModel, engine_model: EngineModel
) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }
    asked = [
        Request("generate_until", "The capital of France is", until=(".",), max_tokens=8),
        Request("generate_until", "Say hello.", chat=True, max_tokens=12),
        Request(
            "generate_until", "Where is the Eiffel tower?", chat=True, schema=schema, max_tokens=24
        ),
    ]
    remote = endpoint.answer(asked)
    local = engine_model.answer(asked)
    assert [a.text for a in remote] == [a.text for a in local]
    assert remote[0].text == " Paris"
    assert set(json.loads(remote[2].text)) == {"city"}
    assert all(a.tokens > 0 for a in remote)


@pytest.mark.slow
def test_tool_calls_come_back_as_name_and_arguments(
    endpoint: EndpointModel, engine_model: EngineModel
) -> None:
    weather = {
        "name": "weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    asked = [
        Request(
            "generate_until",
            "What is the weather in Paris? Call the weather tool.",
            chat=True,
            tools=[weather],
            max_tokens=48,
        )
    ]
    (remote,) = endpoint.answer(asked)
    (local,) = engine_model.answer(asked)
    assert (
        remote.tool_calls
        == local.tool_calls
        == [{"name": "weather", "arguments": {"city": "Paris"}}]
    )
    assert (remote.text or "") == (local.text or "")


@pytest.mark.slow
def test_the_servers_refusals_are_clear_errors(server: Server, endpoint: EndpointModel) -> None:
    with EndpointModel(f"{server.base}/v1", "smollm2", api_key="wrong") as refused:
        with pytest.raises(EvalError, match="refused the API key"):
            refused.answer([Request("loglikelihood", "2 + 2 =", " 4")])
    with EndpointModel(f"{server.base}/v1", "no-such-model", api_key=KEY) as missing:
        with pytest.raises(EvalError, match="no-such-model"):
            missing.answer([Request("generate_until", "hi", max_tokens=2)])
    with EndpointModel(server.base, "smollm2", api_key=KEY) as no_v1:  # the URL lacks /v1
        with pytest.raises(EvalError, match="ends in /v1"):
            no_v1.answer([Request("generate_until", "hi", max_tokens=2)])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nothing_listening_is_a_clear_error() -> None:
    with EndpointModel(f"http://127.0.0.1:{_free_port()}/v1", "m") as nowhere:
        with pytest.raises(EvalError, match="cannot connect"):
            nowhere.answer([Request("generate_until", "hi")])


# --- a scripted server: what owl's own never answers -------------------------------------


class Script:
    """Replies given in order (status, JSON body); the bodies of the requests received."""

    def __init__(self, replies: list[tuple[int, dict[str, Any]]]) -> None:
        self.replies = list(replies)
        self.received: list[dict[str, Any]] = []


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script([])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            length = int(self.headers.get("content-length", "0"))
            script.received.append(json.loads(self.rfile.read(length)))
            status, body = script.replies.pop(0)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            if status in (429, 503):
                self.send_header("retry-after", "0")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", script
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _echo(tokens: list[str], logprobs: list[float | None], index: int = 0) -> dict[str, Any]:
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    tops = [None if lp is None else {tok: lp} for tok, lp in zip(tokens, logprobs, strict=True)]
    return {
        "index": index,
        "text": "".join(tokens),
        "logprobs": {
            "tokens": tokens,
            "token_logprobs": logprobs,
            "top_logprobs": tops,
            "text_offset": offsets,
        },
    }


def test_busy_answers_are_retried_and_prompts_go_in_batches(scripted) -> None:
    base, script = scripted
    both = {
        "choices": [
            _echo(["2", " +", " 2", " =", " 5"], [None, -1.0, -2.0, -0.5, -3.0], index=1),
            _echo(["2", " +", " 2", " =", " 4"], [None, -1.0, -2.0, -0.5, -0.25], index=0),
        ]
    }
    script.replies = [(429, {"error": {"message": "slow down"}}), (503, {}), (200, both)]
    with EndpointModel(base, "m", api_key="k") as model:
        four, five = model.answer(
            [Request("loglikelihood", "2 + 2 =", " 4"), Request("loglikelihood", "2 + 2 =", " 5")]
        )
    assert (four.logprob, four.greedy) == (-0.25, True)
    assert five.logprob == -3.0
    assert len(script.received) == 3
    sent = script.received[-1]
    assert sent["prompt"] == ["2 + 2 = 4", "2 + 2 = 5"]
    assert (sent["max_tokens"], sent["echo"], sent["logprobs"]) == (0, True, 1)


def test_a_server_that_takes_one_prompt_at_a_time_gets_one_at_a_time(scripted) -> None:
    base, script = scripted
    script.replies = [
        (400, {"error": {"message": "owl takes one prompt per request; send a string"}}),
        (200, {"choices": [_echo(["a", " b"], [None, -1.5])]}),
        (200, {"choices": [_echo(["a", " c"], [None, -2.5])]}),
    ]
    with EndpointModel(base, "m") as model:
        answers = model.answer(
            [Request("loglikelihood", "a", " b"), Request("loglikelihood", "a", " c")]
        )
    assert [a.logprob for a in answers] == [-1.5, -2.5]
    assert [body["prompt"] for body in script.received[1:]] == ["a b", "a c"]


def test_a_server_without_echo_is_a_clear_error(scripted) -> None:
    base, script = scripted
    script.replies = [(200, {"choices": [{"index": 0, "text": "", "logprobs": None}]})]
    with EndpointModel(base, "m", batch=1) as model:
        with pytest.raises(EvalError, match="echo and logprobs"):
            model.answer([Request("loglikelihood", "a", " b")])


def test_a_bos_the_server_counts_in_its_offsets_is_not_the_continuation(scripted) -> None:
    base, script = scripted
    script.replies = [(200, {"choices": [_echo(["<s>", "a", " b"], [None, -1.0, -2.0])]})]
    with EndpointModel(base, "m", batch=1) as model:
        (answer,) = model.answer([Request("loglikelihood", "a", " b")])
    assert answer.logprob == -2.0


def test_generation_requests_and_tool_calls(scripted, tmp_path: Path) -> None:
    base, script = scripted
    call = {"type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}
    script.replies = [
        (200, {"choices": [{"text": " Paris"}], "usage": {"total_tokens": 7}}),
        (200, {"choices": [{"message": {"content": None, "tool_calls": [call]}}]}),
    ]
    tool = {"name": "f", "parameters": {"type": "object"}}
    with EndpointModel(base, "m") as model:
        text, called = model.answer(
            [
                Request("generate_until", "The capital is", until=(".", "\n"), max_tokens=5),
                Request("generate_until", "call f", chat=True, tools=[tool]),
            ]
        )
    assert (text.text, text.tokens) == (" Paris", 7)
    assert called.tool_calls == [{"name": "f", "arguments": {"x": 1}}]
    first, second = script.received
    assert (first["prompt"], first["stop"], first["max_tokens"], first["temperature"]) == (
        "The capital is",
        [".", "\n"],
        5,
        0,
    )
    assert second["messages"] == [{"role": "user", "content": "call f"}]
    assert second["tools"] == [{"type": "function", "function": tool}]
