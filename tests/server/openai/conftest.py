"""Fixtures of the OpenAI API tests: one `openai` client and one raw client per module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.server.conftest import Server
from tests.support.openai_client import make_client


@pytest.fixture(scope="module")
def client(server: Server) -> openai.OpenAI:
    return make_client(server)


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base, timeout=120) as raw:
        yield raw
