"""The OpenAI-compatible API under concurrent clients: answers do not mix, a disconnect
frees its slot, a crowd does not starve a stream."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.server.conftest import Server
from tests.support.openai_client import (
    HI,
    MODEL,
    chat,
    make_client,
)

pytestmark = pytest.mark.slow


# --- concurrency -------------------------------------------------------------------------

PROMPTS = [
    "Name a fruit.",
    "What is the capital of Italy?",
    "Write a haiku about snow.",
    "Count from one to five.",
]


def test_concurrent_chats_match_their_answers_alone(server: Server) -> None:
    def ask(prompt: str, barrier: threading.Barrier | None = None) -> str:
        own = make_client(server)
        if barrier is not None:
            barrier.wait(timeout=30)
        response = chat(own, [{"role": "user", "content": prompt}], max_tokens=20)
        return response.choices[0].message.content

    alone = [ask(prompt) for prompt in PROMPTS]
    assert len(set(alone)) == len(PROMPTS)  # different answers, so a mix-up would show
    barrier = threading.Barrier(len(PROMPTS))
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        together = list(pool.map(lambda prompt: ask(prompt, barrier), PROMPTS))
    assert together == alone


def test_concurrent_streams_and_plain_requests_do_not_mix(client: openai.OpenAI) -> None:
    def streamed(prompt: str) -> str:
        chunks = chat(client, [{"role": "user", "content": prompt}], max_tokens=16, stream=True)
        return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)

    def plain(prompt: str) -> str:
        response = chat(client, [{"role": "user", "content": prompt}], max_tokens=16)
        return response.choices[0].message.content

    alone = [plain(prompt) for prompt in PROMPTS]
    with ThreadPoolExecutor(len(PROMPTS)) as pool:
        futures = [
            pool.submit(streamed if index % 2 else plain, prompt)
            for index, prompt in enumerate(PROMPTS)
        ]
        together = [future.result(timeout=120) for future in futures]
    assert together == alone


def test_disconnected_stream_does_not_block_the_next_request(
    server: Server, client: openai.OpenAI
) -> None:
    started = time.monotonic()
    expected = chat(client, HI, max_tokens=8).choices[0].message.content
    alone_s = time.monotonic() - started
    # This story runs to the end of the 512-token context (~10 s on 2 cores): left running
    # after the client goes, or left holding the model, it would hold up the next request.
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    body = {"model": MODEL, "messages": story, "temperature": 0, "max_tokens": 2000, "stream": True}
    with httpx.Client(timeout=120) as abandoner:
        with abandoner.stream("POST", f"{server.base}/v1/chat/completions", json=body) as response:
            assert response.status_code == 200
            seen = 0
            for line in response.iter_lines():
                seen += line.startswith("data: ")
                if seen >= 4:
                    break
    assert seen >= 4
    quick = make_client(server, timeout=60)
    started = time.monotonic()
    answer = chat(quick, HI, max_tokens=8).choices[0].message.content
    next_s = time.monotonic() - started
    assert answer == expected
    assert next_s < 4 * alone_s + 2.0, f"the next request took {next_s:.1f}s, alone {alone_s:.1f}s"


# More waiting requests than the server's worker threads (anyio's default: 40).
CROWD = 48


def test_a_crowd_waiting_behind_a_stream_does_not_starve_it(server: Server) -> None:
    story = [{"role": "user", "content": "Write a long story about a dragon."}]
    body = {"model": MODEL, "messages": story, "temperature": 0, "max_tokens": 40, "stream": True}
    small = {"model": MODEL, "messages": HI, "temperature": 0, "max_tokens": 1}

    def ask() -> int:
        return httpx.post(f"{server.base}/v1/chat/completions", json=small, timeout=90).status_code

    with ThreadPoolExecutor(CROWD) as pool, httpx.Client(timeout=60) as streamer:
        with streamer.stream("POST", f"{server.base}/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            # the stream holds the model once its first token has arrived
            while '"content": ""' in (line := next(lines)) or not line.startswith("data: "):
                pass
            crowd = [pool.submit(ask) for _ in range(CROWD)]
            time.sleep(1.0)  # let the crowd queue up behind the stream
            events = [line, *(line for line in lines if line)]
        statuses = [future.result(timeout=120) for future in crowd]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["usage"]["completion_tokens"] == 40
    assert statuses == [200] * CROWD
