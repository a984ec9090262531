"""/v1/documents, chat with "documents" and /v1/rerank against a real `owl serve` started with
--docs-folder, through the real `openai` client where it applies; refusals are 4xx with a
message, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import OpenAI

from owl.docs.grounding import check_citations
from tests.support.documents import HERON_QUESTION, write_corpus
from tests.support.owl_server import Server, running_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("docs-server")
    write_corpus(root / "shared" / "corpus")
    (root / "private").mkdir()
    (root / "private" / "secret.md").write_text("# Secret\n\nThe vault code is 0000.\n")
    with running_server(root, args=["--docs-folder", str(root / "shared")]) as running:
        yield running


@pytest.fixture(scope="module")
def notes(server: Server) -> dict:
    """Collection "notes" added through the API, its progress streamed."""
    events = []
    with httpx.stream(
        "POST",
        f"{server.base}/v1/documents/notes",
        json={"paths": ["corpus"], "stream": True},
        timeout=300,
    ) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line[6:]))
    return {"events": events}


def test_adding_streams_progress_then_the_report(notes, server: Server) -> None:
    events = notes["events"]
    progress = [e for e in events if e["type"] == "progress"]
    assert progress and progress[-1]["files_done"] == progress[-1]["files_total"] == 6
    done = events[-1]
    assert done["type"] == "done" and len(done["files_read"]) == 6 and done["chunks"] >= 6
    listed = httpx.get(f"{server.base}/v1/documents").json()["data"]
    assert [c["name"] for c in listed] == ["notes"]
    shown = httpx.get(f"{server.base}/v1/documents/notes").json()
    assert shown["files"] == 6 and len(shown["files_indexed"]) == 6
    assert shown["roots"] == ["corpus"]
    assert "corpus/projects/heron.md" in [f["path"] for f in shown["files_indexed"]]
    assert "corpus/projects/heron.md" in done["files_read"]


def test_query_finds_the_planted_fact(notes, server: Server) -> None:
    response = httpx.post(
        f"{server.base}/v1/documents/notes/query",
        json={"query": HERON_QUESTION, "k": 2},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    # Inside the docs folder, paths are the client's: relative, not the server's layout.
    assert len(hits) == 2 and hits[0]["path"] == "corpus/projects/heron.md"
    assert "7-4-1-9" in hits[0]["text"]


def test_query_reranked_by_the_chat_model(notes, server: Server) -> None:
    response = httpx.post(
        f"{server.base}/v1/documents/notes/query",
        json={"query": HERON_QUESTION, "k": 2, "rerank": "smollm2"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    hits = response.json()["hits"]
    assert hits[0]["path"] == "corpus/projects/heron.md"
    assert all(0 < hit["score"] <= 1 for hit in hits)  # query likelihoods, not RRF scores


def test_chat_with_documents_through_the_openai_client(notes, server: Server) -> None:
    client = OpenAI(base_url=f"{server.base}/v1", api_key="none")
    completion = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": HERON_QUESTION}],
        max_tokens=48,
        temperature=0,
        extra_body={"documents": ["notes"], "documents_k": 2},
    )
    extra = completion.model_extra or {}
    sources = extra["sources"]
    assert [s["n"] for s in sources] == [1, 2] and sources[0]["path"].endswith("heron.md")
    choice = completion.choices[0]
    assert choice.message.content
    assert all(1 <= n <= 2 for n in (choice.model_extra or {}).get("citations", []))
    stream = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": HERON_QUESTION}],
        max_tokens=8,
        stream=True,
        extra_body={"documents": ["notes"], "documents_k": 2},
    )
    chunks = list(stream)
    assert (chunks[0].model_extra or {})["sources"][0]["path"].endswith("heron.md")
    finishing = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishing) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    cited = (finishing[0].model_extra or {})["citations"]
    assert cited == check_citations(text, 2).citations


def test_rerank_orders_documents_by_relevance(server: Server) -> None:
    documents = [
        "The regional train leaves every twenty minutes on weekdays.",
        "The launch code for Project Heron is 7-4-1-9.",
        "Leeks are sweated in butter before the stock goes in.",
    ]
    response = httpx.post(
        f"{server.base}/v1/rerank",
        timeout=120,
        json={
            "model": "smollm2",
            "query": HERON_QUESTION,
            "documents": documents,
            "top_n": 2,
            "return_documents": True,
        },
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 2 and results[0]["index"] == 1
    assert results[0]["document"]["text"] == documents[1]
    assert 0 < results[1]["relevance_score"] <= results[0]["relevance_score"] <= 1


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/v1/documents/notes2", {"paths": ["../private"]}, 403),
        ("POST", "/v1/documents/notes2", {"paths": ["/etc"]}, 403),
        ("POST", "/v1/documents/notes2", {"paths": ["missing-folder"]}, 400),
        ("POST", "/v1/documents/Bad%20Name", {"paths": ["corpus"]}, 400),
        ("POST", "/v1/documents/nope/query", {"query": "x"}, 404),
        ("POST", "/v1/documents/notes/query", {"query": ""}, 400),
        ("POST", "/v1/documents/notes/query", {"query": "x", "k": 0}, 400),
        ("GET", "/v1/documents/nope", None, 404),
        ("DELETE", "/v1/documents/nope", None, 404),
        ("POST", "/v1/rerank", {"model": "smollm2", "query": "x", "documents": []}, 400),
        ("POST", "/v1/rerank", {"model": "nope", "query": "x", "documents": ["a"]}, 404),
    ],
)
def test_bad_requests_are_refused_with_a_message(
    notes, server: Server, method, path, body, status
) -> None:
    response = httpx.request(method, f"{server.base}{path}", json=body, timeout=60)
    assert response.status_code == status, response.text
    assert response.json()["error"]["message"]


def test_chat_naming_a_missing_collection_is_a_404(server: Server) -> None:
    response = httpx.post(
        f"{server.base}/v1/chat/completions",
        timeout=60,
        json={
            "model": "smollm2",
            "messages": [{"role": "user", "content": "hi"}],
            "documents": ["nope"],
        },
    )
    assert response.status_code == 404, response.text
    assert "owl docs add nope" in response.json()["error"]["message"]


def test_a_server_without_a_docs_folder_reads_none(tmp_path: Path) -> None:
    write_corpus(tmp_path / "corpus")
    with running_server(tmp_path) as plain:
        response = httpx.post(
            f"{plain.base}/v1/documents/notes",
            json={"paths": [str(tmp_path / "corpus")]},
            timeout=30,
        )
    assert response.status_code == 403
    assert "--docs-folder" in response.json()["error"]["message"]
