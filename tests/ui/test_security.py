"""Untrusted output never runs script; the CSP header; the API key asked for once."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.owl_server import Server, running_server
from tests.ui.conftest import READY, UiPage, open_page

pytestmark = pytest.mark.slow

PAYLOAD = "\n\n".join(
    [
        "<img src=x onerror=alert(1)>",
        "[click me](javascript:alert(2)) and [owl](https://example.org/owl)",
        "```html\n<script>alert(3)</script>\n```",
        "**bold <b>not</b>** and `<i>code</i>`",
        "- one *two*\n- see https://example.org/list",
        "1. first\n2. [https://example.org/label](https://example.org/label)",
    ]
)
SEED = """async (conversation) => {
  const db = await new Promise((resolve, reject) => {
    const request = indexedDB.open("owl", 1);
    request.onupgradeneeded = () =>
      request.result.createObjectStore("conversations", { keyPath: "id" });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  await new Promise((resolve, reject) => {
    const transaction = db.transaction("conversations", "readwrite");
    transaction.objectStore("conversations").put(conversation);
    transaction.oncomplete = resolve;
    transaction.onerror = () => reject(transaction.error);
  });
  db.close();
}"""


def test_html_in_an_answer_shows_as_text_and_runs_nothing(ui: UiPage) -> None:
    page = ui.page
    hostile_token = {
        "token": "<img src=y onerror=alert(4)>",
        "logprob": -0.1,
        "top_logprobs": [{"token": "<svg onload=alert(5)>", "logprob": -2.5}],
    }
    conversation = {
        "id": "seeded",
        "title": "<img src=z onerror=alert(6)>",
        "model": "<b>evil model</b>",
        "updated": 1,
        "messages": [
            {"role": "user", "content": "<img src=u onerror=alert(7)>"},
            {
                "role": "assistant",
                "model": "<b>evil model</b>",
                "content": PAYLOAD,
                "tokens": [hostile_token],
            },
        ],
    }
    page.evaluate(SEED, conversation)
    page.reload()
    page.wait_for_selector(READY)
    messages = page.locator("#messages")
    assert "<img src=x onerror=alert(1)>" in messages.inner_text()
    assert "<script>alert(3)</script>" in page.inner_text("#messages pre code")
    assert page.locator("#messages .content strong").inner_text() == "bold <b>not</b>"
    assert page.locator("#messages .content code").last.inner_text() == "<i>code</i>"
    links = page.locator("#messages a")
    hrefs = [links.nth(index).get_attribute("href") for index in range(links.count())]
    # the javascript: link stays text
    assert hrefs == [f"https://example.org/{path}" for path in ("owl", "list", "label")]
    assert {links.nth(index).get_attribute("rel") for index in range(3)} == {"noopener noreferrer"}
    assert page.locator("#messages a a").count() == 0
    assert page.locator("#messages ul li").all_inner_texts() == [
        "one two",
        "see https://example.org/list",
    ]
    assert page.locator("#messages ul em").inner_text() == "two"
    assert page.locator("#messages ol li").count() == 2
    assert "[click me](javascript:alert(2))" in messages.inner_text()
    assert page.inner_text("#conversation-list .open") == "<img src=z onerror=alert(6)>"

    page.click(".why summary")
    page.click(".token")
    assert page.inner_text("#token-alternatives").count("<svg onload=alert(5)>") == 1
    for selector in ("img", "script", "svg", "b", "i"):
        assert page.locator(f"main {selector}").count() == 0, selector
    assert ui.dialogs == []


def test_the_page_has_a_csp_that_forbids_inline_script(server: Server) -> None:
    page = httpx.get(f"{server.base}/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self';" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "<script>" not in page.text  # every script is a file (script-src 'self')
    script = httpx.get(f"{server.base}/ui/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(f"{server.base}/ui/../config.py").status_code == 404
    # Ollama's clients still find it running at /.
    assert httpx.get(f"{server.base}/").text == "Ollama is running"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ui-keyed")
    with running_server(root, env={"OWL_API_KEYS": "sesame"}) as running:
        yield running


def test_the_page_asks_for_the_key_once_and_keeps_it_for_the_session(
    browser: object, keyed: Server
) -> None:
    pages = open_page(browser, keyed.base)
    ui = next(pages)
    page = ui.page
    page.wait_for_selector("#key-dialog[open]")
    page.fill("#key-input", "sesame")
    page.click("#key-ok")
    page.wait_for_selector(READY)
    page.wait_for_selector("#model option[value=smollm2]", state="attached")
    assert page.evaluate("sessionStorage.getItem('owl.apiKey')") == "sesame"

    page.reload()  # the same tab: the key is kept, nothing is asked
    page.wait_for_selector(READY)
    page.wait_for_selector("#model option[value=smollm2]", state="attached")
    assert not page.is_visible("#key-dialog")
    assert ui.errors == []
    next(pages, None)


def test_no_ui_leaves_the_root_to_ollama(tmp_path_factory: pytest.TempPathFactory) -> None:
    with running_server(tmp_path_factory.mktemp("no-ui"), args=["--no-ui"]) as running:
        answer = httpx.get(f"{running.base}/", headers={"Accept": "text/html"})
        assert answer.text == "Ollama is running"
        assert httpx.get(f"{running.base}/ui/app.js").status_code == 404
