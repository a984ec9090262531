"""The Ollama-compatible API, end to end: the real `owl serve`, the official `ollama` client.

One server per module (tests/server/conftest.py) serves the embedded SmolLM2 with a
512-token context. Greedy decoding (temperature 0) makes answers reproducible, so a
stream is checked against the plain answer. Pulls come from a real HTTP server on loopback.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest

from owl import __version__
from tests.server.conftest import Server
from tests.support.fileserver import FileServer
from tests.support.gguf_edit import copy_with_template, shell_template
from tests.support.owl_server import running_server
from tests.support.tiny_gguf import write_tiny_gguf

pytestmark = pytest.mark.slow

MODEL = "smollm2"
HI = [{"role": "user", "content": "Say hello to a new colleague."}]
GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The shared server, allowed to pull from loopback: the test file server is there."""
    root = tmp_path_factory.mktemp("serve")
    with running_server(root, env={"OWL_ALLOWED_SOURCES": "private"}) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.base, timeout=120) as running:
        yield running


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as raw:
        yield raw


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory, bundled_gguf: Path) -> Iterator[FileServer]:
    """A loopback file server with a tiny clean GGUF and a copy of SmolLM2 with a shell
    command in its chat template (unsafe)."""
    folder = tmp_path_factory.mktemp("ollama-files")
    with FileServer() as running:
        running.add("/tiny.gguf", write_tiny_gguf(folder / "tiny.gguf"))
        evil = shell_template(folder / "pwned")
        running.add("/evil.gguf", copy_with_template(bundled_gguf, folder / "evil.gguf", evil))
        yield running


def refused(call: Any, *args: Any, **kwargs: Any) -> ollama.ResponseError:
    """The ResponseError a client call raises (iterating it, for a stream)."""
    with pytest.raises(ollama.ResponseError) as failed:
        result = call(*args, **kwargs)
        if kwargs.get("stream"):
            list(result)
    return failed.value


# --- liveness, list, show, ps ---------------------------------------------------------------


def test_root_answers_like_ollama_and_version_is_owls(http: httpx.Client) -> None:
    assert http.get("/").text == "Ollama is running"
    assert http.head("/").status_code == 200
    assert http.head("/api/tags").status_code == 200
    assert http.get("/api/version").json() == {"version": __version__}


def test_list_names_the_bundled_model_with_its_details(
    client: ollama.Client, bundled_gguf: Path
) -> None:
    models = {model.model: model for model in client.list().models}
    bundled = models["smollm2:latest"]
    assert bundled.size == bundled_gguf.stat().st_size
    assert bundled.digest == hashlib.sha256(bundled_gguf.read_bytes()).hexdigest()
    assert bundled.details is not None
    assert bundled.details.format == "gguf"
    assert bundled.details.family == "llama"
    assert bundled.details.quantization_level == "Q4_1"
    assert bundled.details.parameter_size == "135M"
    assert bundled.modified_at is not None and bundled.modified_at <= datetime.now(UTC)


def test_show_gives_template_parameters_license_and_model_info(client: ollama.Client) -> None:
    shown = client.show(MODEL)
    assert shown.modelinfo is not None
    assert shown.modelinfo["general.architecture"] == "llama"
    assert shown.modelinfo["llama.context_length"] == 8192
    assert shown.modelinfo["general.parameter_count"] > 100_000_000
    assert shown.capabilities == ["completion", "tools"]
    assert shown.template is not None and "<|im_start|>" in shown.template
    assert shown.parameters is not None and "temperature" in shown.parameters
    assert shown.license == "apache-2.0"
    assert shown.modelfile is not None and "FROM smollm2:latest" in shown.modelfile


def test_ps_lists_a_model_once_it_is_loaded(client: ollama.Client, bundled_gguf: Path) -> None:
    assert client.chat(MODEL, messages=[]).done_reason == "load"  # Ollama's way to load
    loaded = {model.model: model for model in client.ps().models}
    # Its memory: the weights plus the KV cache of its slots (the pool's estimate).
    assert loaded["smollm2:latest"].size > bundled_gguf.stat().st_size
    expires = loaded["smollm2:latest"].expires_at
    assert expires is not None and expires > datetime.now(UTC)


# --- chat and generate ----------------------------------------------------------------------


def test_chat_stream_concatenates_to_the_plain_answer(
    client: ollama.Client, http: httpx.Client
) -> None:
    whole = client.chat(MODEL, messages=HI, options=GREEDY)
    assert whole.done and whole.message.role == "assistant"
    assert whole.message.content
    assert whole.prompt_eval_count and 0 < (whole.eval_count or 0) <= 24
    assert whole.total_duration and whole.eval_duration and whole.prompt_eval_duration

    chunks = list(client.chat(MODEL, messages=HI, options=GREEDY, stream=True))
    assert [chunk.done for chunk in chunks] == [False] * (len(chunks) - 1) + [True]
    assert "".join(chunk.message.content or "" for chunk in chunks) == whole.message.content
    assert chunks[-1].done_reason == whole.done_reason
    assert chunks[-1].eval_count == whole.eval_count

    # Streaming is Ollama's default, as NDJSON.
    with http.stream(
        "POST", "/api/chat", json={"model": MODEL, "messages": HI, "options": GREEDY}
    ) as response:
        assert response.headers["content-type"].startswith("application/x-ndjson")
        assert len([line for line in response.iter_lines() if line]) == len(chunks)


def test_generate_honours_num_predict_stop_system_and_raw(client: ollama.Client) -> None:
    prompt = "List the planets of the solar system."
    plain = client.generate(MODEL, prompt, options=GREEDY)
    assert plain.response and plain.done_reason in ("stop", "length")

    short = client.generate(MODEL, prompt, options={"temperature": 0, "num_predict": 3})
    assert short.eval_count == 3 and short.done_reason == "length"
    assert plain.response.startswith(short.response)

    words = plain.response.split()
    assert len(words) > 3, plain.response
    stop = words[3]
    stopped = client.generate(MODEL, prompt, options={**GREEDY, "stop": [stop]})
    assert stopped.done_reason == "stop"
    assert stopped.response == plain.response[: plain.response.index(stop)]

    pirate = client.generate(MODEL, prompt, system="Talk like a pirate.", options=GREEDY)
    assert pirate.response != plain.response
    # The system message replaces the template's default one ("You are … SmolLM …").
    assert pirate.prompt_eval_count != plain.prompt_eval_count

    raw = client.generate(MODEL, "The three primary colors are", raw=True, options=GREEDY)
    templated = client.generate(MODEL, "The three primary colors are", options=GREEDY)
    # Raw: the text alone, without the chat template's system prompt and markup.
    assert (raw.prompt_eval_count or 0) < 10 < (templated.prompt_eval_count or 0)


def test_a_client_that_leaves_mid_stream_frees_the_model(
    server: Server, client: ollama.Client
) -> None:
    started = time.monotonic()
    expected = client.chat(MODEL, messages=HI, options=GREEDY).message.content
    alone_s = time.monotonic() - started
    # Runs to the end of the 512-token context (~10 s) unless leaving stops it.
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    body = {"model": MODEL, "messages": story, "options": {"temperature": 0, "num_predict": 2000}}
    with httpx.Client(timeout=120) as leaver:
        with leaver.stream("POST", f"{server.base}/api/chat", json=body) as response:
            lines = response.iter_lines()
            assert [json.loads(next(lines))["done"] for _ in range(4)] == [False] * 4
    started = time.monotonic()
    assert client.chat(MODEL, messages=HI, options=GREEDY).message.content == expected
    next_s = time.monotonic() - started
    assert next_s < 4 * alone_s + 2.0, f"the next request took {next_s:.1f}s, alone {alone_s:.1f}s"


# --- errors ---------------------------------------------------------------------------------


def test_an_unknown_model_is_404(client: ollama.Client) -> None:
    for stream in (False, True):
        error = refused(client.chat, "no-such-model", messages=HI, stream=stream)
        assert error.status_code == 404 and "no-such-model" in error.error
    assert refused(client.show, "no-such-model").status_code == 404


def test_bad_requests_are_400_in_ollamas_shape(client: ollama.Client, http: httpx.Client) -> None:
    for body in ("{not json", '["a list"]', '{"messages": []}'):
        response = http.post("/api/chat", content=body)
        assert response.status_code == 400, response.text
        assert set(response.json()) == {"error"} and response.json()["error"]
    error = refused(client.generate, MODEL, "hi", options={"temperature": -1})
    assert error.status_code == 400 and "temperature" in error.error
    error = refused(client.generate, MODEL, "hi", template="{{ .Prompt }}")
    assert error.status_code == 400 and "raw" in error.error
    # Too long for the server's 512-token context: refused before the stream starts.
    error = refused(client.generate, MODEL, "word " * 600, stream=True)
    assert error.status_code == 400 and "context" in error.error
    # The OpenAI routes keep OpenAI's error shape.
    assert set(http.post("/v1/chat/completions", content="{").json()["error"]) >= {"message"}


def test_what_owl_cannot_do_yet_is_501(client: ollama.Client) -> None:
    for call, kwargs in (
        (client.generate, {"prompt": "hi", "raw": True, "images": ["aGk="]}),
        (client.generate, {"prompt": "hi", "suffix": "end"}),
    ):
        error = refused(call, MODEL, **kwargs)
        assert error.status_code == 501 and "not supported yet" in error.error, kwargs


PET = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "legs": {"type": "integer"}},
    "required": ["name", "legs"],
}


def test_format_json_and_schema_constrain_the_output(client: ollama.Client) -> None:
    options = {"temperature": 0, "num_predict": 80}
    answer = client.chat(MODEL, messages=HI, format="json", options=options)
    assert isinstance(json.loads(answer.message.content), dict)
    answer = client.generate(MODEL, prompt="Describe a pet.", format=PET, options=options)
    pet = json.loads(answer.response)
    assert set(pet) == {"name", "legs"} and isinstance(pet["legs"], int)


def test_tool_calls_come_back_with_parsed_arguments(client: ollama.Client) -> None:
    def get_weather(city: str) -> str:
        """The weather in a city.

        Args:
          city: the city's name
        """
        return "sunny"

    question = [{"role": "user", "content": "Call get_weather for Paris."}]
    options = {"temperature": 0, "num_predict": 80}
    answer = client.chat(MODEL, messages=question, tools=[get_weather], options=options)
    streamed = list(
        client.chat(MODEL, messages=question, tools=[get_weather], options=options, stream=True)
    )
    if answer.message.tool_calls:  # the model chose the tool (it may answer in words)
        (call,) = answer.message.tool_calls
        assert call.function.name == "get_weather"
        assert set(call.function.arguments) <= {"city"}
        assert [c.function.name for s in streamed for c in s.message.tool_calls or []] == [
            "get_weather"
        ]
        # The call and its result go back in, as Ollama's clients send them.
        history = [
            *question,
            answer.message,
            {"role": "tool", "content": "sunny", "tool_name": "get_weather"},
        ]
        again = client.chat(MODEL, messages=history, options=options)
        assert again.done
    else:
        assert answer.message.content
    assert streamed[-1].done


# --- pull -----------------------------------------------------------------------------------


def test_pull_streams_progress_and_ends_in_success(
    client: ollama.Client, files: FileServer
) -> None:
    url = files.url("/tiny.gguf")
    statuses = list(client.pull(url, insecure=True, stream=True))
    assert statuses[0].status == "pulling manifest"
    assert statuses[-1].status == "success"
    progress = [status for status in statuses if status.completed is not None]
    size = files.files["/tiny.gguf"].data_path.stat().st_size
    assert progress and progress[-1].completed == progress[-1].total == size
    digest = hashlib.sha256(files.files["/tiny.gguf"].data_path.read_bytes()).hexdigest()
    assert progress[-1].digest == f"sha256:{digest}"
    assert "tiny:latest" in {model.model for model in client.list().models}

    # Pulled again: already stored, one answer.
    assert client.pull(url, insecure=True).status == "success"


def test_pull_refuses_plain_http_without_insecure_and_server_paths(
    client: ollama.Client, files: FileServer, bundled_gguf: Path
) -> None:
    error = refused(client.pull, files.url("/tiny.gguf"))
    assert error.status_code == 400 and "insecure" in error.error
    error = refused(client.pull, str(bundled_gguf), stream=True)
    assert error.status_code == 400 and "owl pull PATH" in error.error
    assert refused(client.pull, files.url("/missing.gguf"), insecure=True).status_code == 404


def test_an_unsafe_model_is_pulled_with_a_warning_and_refused_with_403(
    client: ollama.Client, files: FileServer
) -> None:
    pulled = list(client.pull(files.url("/evil.gguf"), insecure=True, stream=True))
    statuses = [line.status or "" for line in pulled]
    assert statuses[-1] == "success"
    assert any(status.startswith("warning: evil is unsafe") for status in statuses), statuses
    completed = [line.completed for line in pulled if line.completed is not None]
    assert completed == sorted(completed)
    assert completed[-1] == files.files["/evil.gguf"].data_path.stat().st_size
    error = refused(client.chat, "evil", messages=HI)
    assert error.status_code == 403 and "unsafe" in error.error
    assert not (files.files["/evil.gguf"].data_path.parent / "pwned").exists()


def test_images_for_a_text_model_say_it_cannot_see(client: ollama.Client) -> None:
    error = refused(client.chat, MODEL, messages=[{**HI[0], "images": ["aGk="]}])
    assert error.status_code == 400 and "cannot see images" in error.error


@pytest.mark.parametrize(
    ("model", "capabilities"), [("whisper", ["transcribe"]), ("piper-joe", ["speak"])]
)
def test_show_names_what_a_speech_model_does(
    client: ollama.Client, model: str, capabilities: list[str]
) -> None:
    assert client.show(model).capabilities == capabilities
