"""Fuzz a real `owl serve` from its own OpenAPI document (schemathesis) and, for the Ollama
routes that read a raw body (the document gives them none), with hypothesis-made JSON.

Whatever comes in: never a 5xx, every error in the shape of its API (OpenAI's
{"error": {"message", …}} on /v1, Anthropic's {"type": "error", "error": {"type",
"message"}} on /v1/messages, Ollama's {"error": "…"} on /api), no failure reported
in-band in a stream, and the server alive afterwards. Bounded: a few examples per operation,
a small token cap, derandomized so that a run is the same run every time.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.server.conftest import Server
from tests.support.hostile import OLLAMA_BODY_ROUTES
from tests.support.owl_server import running_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MAX_TOKENS = 4  # the server's cap: a generation costs a few tokens whatever is asked
MAX_BODY = 64 * 1024
EXAMPLES = 25  # per OpenAPI operation and mode
RAW_EXAMPLES = 50  # per raw-body Ollama route
REQUEST_TIMEOUT_S = 60
RAW_ROUTES = OLLAMA_BODY_ROUTES
FUZZ = settings(
    max_examples=RAW_EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples every run: a deterministic suite
    database=None,  # and no .hypothesis folder in the working tree
    report_multiple_bugs=False,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],  # no shrinking: a failure as found, in seconds
)
FUZZ_OPERATION = settings(FUZZ, max_examples=EXAMPLES)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--max-tokens", str(MAX_TOKENS), "--max-body", str(MAX_BODY), "--parallel", "2"]
    with running_server(tmp_path_factory.mktemp("fuzz"), args=args) as running:
        yield running


@pytest.fixture(scope="module")
def api_schema(fuzzed: Server) -> Any:
    return schemathesis.openapi.from_url(f"{fuzzed.base}/openapi.json", timeout=REQUEST_TIMEOUT_S)


def check_answer(path: str, status: int, content_type: str, text: str, *, sent: object) -> None:
    """No 5xx; an error in its API's shape; a 200 stream that reports no failure in-band.

    Two are no failure: 501, owl's deliberate answer to what it does not support yet
    (`think`), and 502 from /api/pull, whose source failed.
    """
    expected = status == 501 or (status == 502 and path == "/api/pull")
    assert status < 500 or expected, f"{status} from {path} for {sent!r:.300}: {text:.500}"
    if status >= 400:
        body = json.loads(text)
        if path.startswith("/api/"):
            assert set(body) == {"error"} and isinstance(body["error"], str), body
        elif path.startswith("/v1/messages"):
            assert body["type"] == "error" and set(body["error"]) == {"type", "message"}, body
            assert (
                isinstance(body["error"]["message"], str) and body["error"]["type"] != "api_error"
            )
        else:
            error = body["error"]
            assert {"message", "type", "param", "code"} <= set(error), body
            assert isinstance(error["message"], str) and error["type"] != "server_error"
        return
    if "ndjson" in content_type:
        for line in filter(None, text.splitlines()):
            error = json.loads(line).get("error")
            assert error is None or not error.startswith(("generation failed", "internal")), line
    elif "event-stream" in content_type:
        for line in text.splitlines():
            if line.startswith("data: {"):
                error = json.loads(line[6:]).get("error")
                assert error is None or error.get("type") not in ("server_error", "api_error"), line


# schemathesis' own pytest integration (schema.parametrize) does not run under pytest 9:
# each operation of the document is fuzzed here with its strategy instead.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_operation_answers_fuzzed_requests_without_a_5xx(
    fuzzed: Server, api_schema: Any, mode: GenerationMode
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15, [operation.label for operation in operations]
    failures = {}
    for operation in operations:

        @FUZZ_OPERATION
        @given(case=operation.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            response = case.call(base_url=fuzzed.base, timeout=REQUEST_TIMEOUT_S)
            content_type = response.headers.get("content-type", [""])[0]
            sent = (case.method, case.formatted_path, case.query, case.body)
            check_answer(case.path, response.status_code, content_type, response.text, sent=sent)

        try:
            one()
        except Unsatisfiable:  # no invalid request exists (GET /health): nothing to send
            assert mode is GenerationMode.NEGATIVE, f"no request generated for {operation.label}"
        except AssertionError as err:  # every operation is tried; all failures are reported
            failures[operation.label] = str(err)[:1000]
        assert fuzzed.process.poll() is None, f"{operation.label} killed owl serve"
    assert not failures, json.dumps(failures, indent=1)


# JSON a hostile or careless client sends: the edge values of each type, nested a little.
EDGES = st.sampled_from(
    [0, -1, 1, 2**31, 2**63, -(2**63), 10**400, 1e308, math.inf, -math.inf, math.nan, ""]
    + ["\ud800", "\udc00", "\x00", "forever", "-1", "5m", "9999999999h", " smollm2 ", "json"]
)
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | EDGES
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=12,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool"]) | JSON},
    optional={"content": st.text(max_size=20) | JSON, "images": JSON, "tool_calls": JSON},
)
OPTIONS = st.dictionaries(
    st.sampled_from(
        ["temperature", "top_k", "top_p", "min_p", "seed", "num_predict", "stop", "num_ctx"]
        + ["repeat_penalty", "presence_penalty", "frequency_penalty"]
    ),
    SCALARS,
    max_size=4,
)
FIELDS = {  # every field some Ollama route reads, with what a careless client puts there
    "model": st.sampled_from(["smollm2", "SmolLM2", "smollm2:latest", "nope", "~x", ""]) | SCALARS,
    "name": st.sampled_from(["smollm2", "smollm2:latest"]) | SCALARS,
    "messages": st.lists(MESSAGE, max_size=3) | JSON,
    "prompt": st.text(max_size=30) | SCALARS,
    "system": st.text(max_size=10) | SCALARS,
    "input": st.lists(st.text(max_size=10), max_size=3) | SCALARS,
    "options": OPTIONS | JSON,
    "keep_alive": SCALARS,
    "format": st.just("json") | JSON,
    "stream": st.booleans() | SCALARS,
    "raw": st.booleans() | SCALARS,
    "think": SCALARS,
    "tools": JSON,
    "insecure": st.booleans(),
    "truncate": SCALARS,
    "dimensions": SCALARS,
}
TEXT = st.text(max_size=30)
VALID = {  # a request each route serves, so that one odd field reaches the work behind it
    "/api/chat": {
        "messages": st.lists(
            MESSAGE.map(lambda m: {"role": "user", "content": "hi", **m}), min_size=1, max_size=2
        )
    },
    "/api/generate": {"prompt": TEXT},
    "/api/show": {},
    "/api/pull": {"stream": st.booleans()},  # the built-in model: nothing is downloaded
    "/api/embed": {"input": st.lists(TEXT, min_size=1, max_size=2)},
    "/api/embeddings": {"prompt": TEXT},
}


def bodies(path: str) -> st.SearchStrategy[Any]:
    """Mostly a valid request with one or two fields (or options) replaced; also any object
    of Ollama's fields, and any JSON at all. No URLs among the model names: a pull would
    reach out of the machine."""
    base = st.fixed_dictionaries(
        {"model": st.just("smollm2"), "options": st.just({"num_predict": 2}), **VALID[path]}
    )
    odd_field = st.sampled_from(sorted(FIELDS)).flatmap(
        lambda key: FIELDS[key].map(lambda value: {key: value})
    )
    odd_fields = st.lists(odd_field, min_size=1, max_size=2).map(
        lambda fields: {key: value for field in fields for key, value in field.items()}
    )
    odd_options = st.builds(lambda options: {"options": {"num_predict": 2, **options}}, OPTIONS)
    mostly_valid = st.tuples(base, odd_fields | odd_options).map(
        lambda pair: {**pair[0], **pair[1]}
    )
    anything = st.fixed_dictionaries({}, optional=FIELDS)
    return st.one_of(mostly_valid, mostly_valid, anything, JSON)


@pytest.fixture(scope="module")
def http(fuzzed: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fuzzed.base, timeout=REQUEST_TIMEOUT_S) as client:
        yield client


@pytest.mark.parametrize("path", RAW_ROUTES)
def test_ollama_routes_answer_fuzzed_json_without_a_5xx(
    fuzzed: Server, http: httpx.Client, path: str
) -> None:
    @FUZZ
    @given(body=bodies(path))
    def one(body: Any) -> None:
        # json.dumps writes NaN, Infinity and the escapes of lone surrogates, as clients do.
        raw = json.dumps(body).encode()
        response = http.post(path, content=raw, headers={"Content-Type": "application/json"})
        content_type = response.headers.get("content-type", "")
        check_answer(path, response.status_code, content_type, response.text, sent=raw)

    one()
    assert fuzzed.process.poll() is None, f"owl serve died:\n{fuzzed.log_text()[-3000:]}"


def test_the_server_is_alive_after_the_fuzzing(fuzzed: Server, http: httpx.Client) -> None:
    assert fuzzed.process.poll() is None
    assert http.get("/health").json()["status"] == "ok"
    reply = http.post(
        "/v1/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert reply.status_code == 200, reply.text[:500]
    assert reply.json()["usage"]["completion_tokens"] <= MAX_TOKENS


# Names that are paths, URLs of local things or not names at all, which the fuzzing found
# (a "~user" path of an unknown user was a 500) or may: kept as fixed cases on every route.
ODD_NAMES = ["~x", "~nosuchuser/m.gguf", "./m.gguf", "/etc/hostname", "../../etc/passwd"]
ODD_NAMES += ["file:///etc/hostname", "package:nope/m.gguf", "a+b+c", "smollm2:", ":latest"]
ODD_NAMES += ["\x00", "x" * 600]
NAMED_ROUTES = {
    "/api/show": {},
    "/api/chat": {"messages": [{"role": "user", "content": "hi"}], "stream": False},
    "/api/generate": {"prompt": "hi", "stream": False},
    "/api/embed": {"input": "hi"},
    "/api/pull": {"stream": False},  # only what no pull fetches: a path, a package
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "hi"}]},
    "/v1/completions": {"prompt": "hi"},
    "/v1/embeddings": {"input": "hi"},
}


@pytest.mark.parametrize("name", ODD_NAMES, ids=[repr(name)[:20] for name in ODD_NAMES])
def test_odd_model_names_are_4xx_on_every_route(http: httpx.Client, name: str) -> None:
    quoted = urllib.parse.quote(name, safe="")
    answers = {
        f"/v1/models/{quoted}": http.get(f"/v1/models/{quoted}"),
        f"/api/ps/{quoted}": http.delete(f"/api/ps/{quoted}"),
    }
    for path, extra in NAMED_ROUTES.items():
        if path == "/api/pull" and not name.startswith(("~", ".", "/", "file:", "package:")):
            continue
        answers[path] = http.post(path, json={"model": name, **extra})
    for path, response in answers.items():
        assert 400 <= response.status_code < 500, f"{path}: {response.text[:300]}"
        check_answer(path, response.status_code, "", response.text, sent=name)
