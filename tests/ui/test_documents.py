"""The documents page against a real `owl serve --docs-folder DIR` with the embedded models
(minilm embeds, smollm2 answers): a folder added with its progress to the end and listed,
a question answered with its numbered sources, search only, delete; document text and file
names that hold markup show as text; a server without a docs folder says how to give it one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.documents import HERON_QUESTION, ORCHARD_QUESTION, write_corpus
from tests.support.owl_server import Server, running_server
from tests.ui.conftest import READY, UiPage, open_page

pytestmark = pytest.mark.slow
LOAD_MS = 180_000  # the first ingestion loads the embedder, the first answer the chat model
PHONE = {"width": 390, "height": 844}
# OWL_SCREENSHOTS=docs saves the page for the README (docs/ui-documents.png).
SCREENSHOTS = os.environ.get("OWL_SCREENSHOTS")
HOSTILE_NAME = "notes <img src=x onerror=alert(1)>.md"
HOSTILE_TEXT = 'The egret <img src=x onerror="alert(2)"> nests beside the mill pond.'
CORPUS_FILES = 7  # write_corpus's six, and the hostile one


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ui-documents")
    corpus = root / "corpus"
    write_corpus(corpus)
    (corpus / HOSTILE_NAME).write_text(f"# Birds\n\n{HOSTILE_TEXT}\n", encoding="utf-8")
    with running_server(root, args=["--docs-folder", str(corpus)]) as up:
        yield up


@pytest.fixture(scope="module")
def notes(docs_server: Server) -> str:
    """A collection of the whole corpus, made through the API (the page adds its own)."""
    added = httpx.post(f"{docs_server.base}/v1/documents/notes", json={"paths": ["."]}, timeout=300)
    assert added.status_code == 200, added.text
    return "notes"


def documents_page(browser: object, server: Server, **context: object) -> Iterator[UiPage]:
    pages = open_page(browser, server.base, **context)
    ui = next(pages)
    ui.page.wait_for_selector(READY)
    ui.page.click("nav button:text('Documents')")
    ui.page.wait_for_selector("#docs-model option[value=smollm2]", state="attached")
    yield ui
    assert not ui.errors, ui.errors
    next(pages, None)


@pytest.fixture
def ui(browser: object, docs_server: Server) -> Iterator[UiPage]:
    yield from documents_page(browser, docs_server)


# Every value the bar takes, in order (a MutationObserver's old values, then the last).
WATCH_BAR = """() => {
  const bar = document.getElementById("docs-progress");
  window.barRecords = [];
  new MutationObserver((records) => window.barRecords.push(...records))
    .observe(bar, { attributes: true, attributeFilter: ["value"], attributeOldValue: true });
}"""
BAR_VALUES = """() => [...window.barRecords.map((record) => record.oldValue),
  document.getElementById("docs-progress").getAttribute("value")].map(Number)"""


def add(ui: UiPage, name: str, path: str = ".") -> None:
    page = ui.page
    page.evaluate(WATCH_BAR)
    page.fill("#docs-name", name)
    page.fill("#docs-path", path)
    page.click("#docs-add")
    ended = "#docs-add-status:text('Added to'), #docs-add-status:text('Cannot')"
    page.wait_for_selector(ended, timeout=LOAD_MS)


def ask(ui: UiPage, collection: str, question: str, *, search_only: bool = False) -> None:
    page = ui.page
    page.select_option("#docs-collection", collection)
    page.set_checked("#docs-search-only", search_only)
    page.fill("#docs-max-tokens", "48")
    page.fill("#docs-question", question)
    page.press("#docs-question", "Enter")  # the keyboard alone asks
    ended = ", ".join(
        f"#docs-ask-status:text('{start}')" for start in ("Found", "Nothing", "Answered", "Cannot")
    )
    page.wait_for_selector(ended, timeout=LOAD_MS)


def table_row(ui: UiPage, name: str) -> list[str]:
    row = ui.page.locator("#docs-table tbody tr", has=ui.page.locator(f"td.name:text-is('{name}')"))
    return row.locator("td").all_inner_texts()


def test_adding_a_folder_follows_its_progress_to_the_report_and_lists_it(
    ui: UiPage, docs_server: Server
) -> None:
    page = ui.page
    add(ui, "added")
    listed = httpx.get(f"{docs_server.base}/v1/documents").json()["data"]
    (collection,) = [item for item in listed if item["name"] == "added"]
    assert collection["files"] == CORPUS_FILES
    chunks = collection["chunks"]
    assert page.eval_on_selector("#docs-progress", "p => [p.value, p.max]") == [7, 7]
    # It moved at each file the server read, from the start to the end.
    assert list(dict.fromkeys(page.evaluate(BAR_VALUES))) == [0, 1, 2, 3, 4, 5, 6, 7]
    count = page.inner_text("#docs-count")
    assert count.startswith(f"7/7 files · {chunks} chunks · ") and count.endswith(" chunks/s")
    status = page.inner_text("#docs-add-status")
    assert status.startswith("Added to added: 7 read, 0 unchanged, 0 skipped, 0 removed;")
    read = page.locator("#docs-report li").all_inner_texts()
    assert len(read) == CORPUS_FILES
    assert any(item.endswith("projects/heron.md") for item in read)
    assert any(item.endswith(HOSTILE_NAME) for item in read)  # the name as text
    assert page.locator("#docs-report img").count() == 0
    cells = table_row(ui, "added")
    assert cells[:3] == ["added", "7", str(chunks)] and cells[4] == "minilm"
    assert page.input_value("#docs-collection") == "added"  # ready to be asked

    add(ui, "added")  # again: nothing changed, nothing read
    assert page.inner_text("#docs-add-status").startswith(
        "Added to added: 0 read, 7 unchanged, 0 skipped, 0 removed;"
    )
    assert page.locator("#docs-report h3").all_inner_texts() == ["Unchanged (7)"]
    assert page.inner_text("#docs-count").startswith("7/7 files · 0 chunks · ")


def test_a_question_is_answered_with_its_numbered_sources(ui: UiPage, notes: str) -> None:
    page = ui.page
    page.reload()  # lists the collection the fixture made
    page.wait_for_selector(READY)
    page.wait_for_selector("#docs-collection option[value=notes]", state="attached")
    assert page.input_value("#docs-model") == "smollm2"
    with page.expect_response("**/v1/chat/completions") as answered:
        ask(ui, notes, HERON_QUESTION)
    completion = answered.value.json()
    assert page.inner_text("#docs-answer").strip()
    assert page.inner_text("#docs-ask-status").startswith(f"Answered by smollm2 from {notes};")
    sources = page.locator("#docs-sources li")
    numbers = sources.locator(".number").all_inner_texts()
    assert numbers == [f"[{source['n']}]" for source in completion["sources"]]
    locations = sources.locator(".location").all_inner_texts()
    assert any(location.endswith("heron.md") for location in locations), locations
    cited = page.locator("#docs-sources li.cited .number").all_inner_texts()
    assert cited == [f"[{n}]" for n in sorted(completion["choices"][0]["citations"])]
    assert page.locator("#docs-sources .score").count() == 0
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "ui-documents.png"), full_page=True)


def test_search_only_shows_the_passages_and_no_answer(ui: UiPage, notes: str) -> None:
    page = ui.page
    page.reload()
    page.wait_for_selector(READY)
    page.wait_for_selector("#docs-collection option[value=notes]", state="attached")
    with page.expect_response("**/query") as searched:
        ask(ui, notes, ORCHARD_QUESTION, search_only=True)
    hits = searched.value.json()["hits"]
    assert page.inner_text("#docs-ask-status") == f"Found {len(hits)} passages in {notes}."
    locations = page.locator("#docs-sources .location").all_inner_texts()
    # A PDF's passages are found again by their page (ledger.pdf:3).
    pages = [f":{hit['page']}" if hit["page"] is not None else "" for hit in hits]
    assert locations == [hit["path"] + page for hit, page in zip(hits, pages, strict=True)]
    assert any(location.endswith("orchard.html") for location in locations)
    assert page.locator("#docs-sources .score").count() == len(hits)
    assert page.inner_text("#docs-answer") == ""


def test_markup_in_a_document_and_its_name_shows_as_text(ui: UiPage, notes: str) -> None:
    page = ui.page
    page.reload()
    page.wait_for_selector(READY)
    page.wait_for_selector("#docs-collection option[value=notes]", state="attached")
    ask(ui, notes, "Where does the egret nest by the mill pond?", search_only=True)
    sources = page.locator("#docs-sources")
    assert any(
        location.endswith(HOSTILE_NAME)
        for location in sources.locator(".location").all_inner_texts()
    )
    assert HOSTILE_TEXT in sources.inner_text()
    for selector in ("img", "script"):
        assert page.locator(f"#documents {selector}").count() == 0, selector
    assert ui.dialogs == []


def test_delete_asks_first_and_removes_the_collection(ui: UiPage, docs_server: Server) -> None:
    page = ui.page
    made = httpx.post(
        f"{docs_server.base}/v1/documents/scratch", json={"paths": ["trains.txt"]}, timeout=300
    )
    assert made.status_code == 200, made.text
    page.reload()
    page.wait_for_selector(READY)
    page.wait_for_selector("#docs-table td.name:text-is('scratch')")
    page.click("button[aria-label='Delete scratch']")
    page.wait_for_selector("#docs-status:text('Deleted scratch.')")
    assert ui.dialogs == [
        ("confirm", "Delete the collection scratch? Its index is removed; the documents stay.")
    ]
    assert page.locator("#docs-table td.name:text-is('scratch')").count() == 0
    assert page.locator("#docs-collection option[value=scratch]").count() == 0
    assert httpx.get(f"{docs_server.base}/v1/documents/scratch").status_code == 404


def test_a_server_without_a_docs_folder_says_how_to_give_it_one(
    browser: object, server: Server
) -> None:
    pages = documents_page(browser, server)
    ui = next(pages)
    add_status = "#docs-add-status:text('Cannot add')"
    ui.page.fill("#docs-name", "notes")
    ui.page.click("#docs-add")
    ui.page.wait_for_selector(add_status)
    status = ui.page.inner_text("#docs-add-status")
    assert status.startswith("Cannot add: 403: this server reads no document folders;")
    assert "--docs-folder DIR" in status
    assert ui.page.is_enabled("#docs-add") and ui.page.is_disabled("#docs-add-stop")
    next(pages, None)


def test_a_phone_sees_the_page_without_scrolling_sideways(
    browser: object, docs_server: Server, notes: str
) -> None:
    pages = documents_page(browser, docs_server, viewport=PHONE, is_mobile=True)
    ui = next(pages)
    for selector in ("#docs-name", "#docs-path", "#docs-add", "#docs-question", "#docs-ask"):
        box = ui.page.locator(selector).bounding_box()
        assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"]
    ask(ui, notes, HERON_QUESTION, search_only=True)
    assert ui.page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    next(pages, None)
