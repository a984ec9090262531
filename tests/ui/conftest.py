"""A real headless chromium (Debian's, driven by Playwright) against a real `owl serve`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.owl_server import Server, running_server

CHROMIUM = Path("/usr/bin/chromium")
READY = "body[data-ready=true]"  # app.js sets it once the chat page has loaded


@dataclass
class UiPage:
    """A page of the UI, and every dialog (alert, confirm, prompt) it opened."""

    page: object  # playwright.sync_api.Page
    dialogs: list[tuple[str, str]] = field(default_factory=list)
    prompt_answers: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def on_dialog(self, dialog: object) -> None:
        self.dialogs.append((dialog.type, dialog.message))
        if dialog.type == "prompt" and self.prompt_answers:
            dialog.accept(self.prompt_answers.pop(0))
        elif dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(
            "the UI tests need Debian's chromium: apt-get install chromium (make test does)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        running = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield running
        running.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The UI's server, allowed to pull from loopback (the tests' file server is there)."""
    root = tmp_path_factory.mktemp("ui-serve")
    with running_server(root, env={"OWL_ALLOWED_SOURCES": "private"}) as running:
        yield running


def open_page(browser: object, base: str, **context: object) -> Iterator[UiPage]:
    """The UI at `base`, loaded; the context (storage, IndexedDB) is the test's own."""
    browser_context = browser.new_context(**context)
    page = browser_context.new_page()
    ui = UiPage(page)
    page.on("dialog", ui.on_dialog)
    page.on("pageerror", lambda error: ui.errors.append(str(error)))
    page.goto(base + "/")
    yield ui
    browser_context.close()


@pytest.fixture
def ui(browser: object, server: Server) -> Iterator[UiPage]:
    pages = open_page(browser, server.base)
    ui = next(pages)
    ui.page.wait_for_selector(READY)
    yield ui
    assert not ui.errors, ui.errors
    next(pages, None)
