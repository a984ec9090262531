"""The models page: the store as a table, a pull from loopback with its progress, unload."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.support.fileserver import FileServer
from tests.support.tiny_gguf import write_tiny_gguf
from tests.ui.conftest import UiPage

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FileServer]:
    folder = tmp_path_factory.mktemp("ui-files")
    with FileServer() as running:
        running.add("/tiny.gguf", write_tiny_gguf(folder / "tiny.gguf"))
        yield running


def models_page(ui: UiPage) -> None:
    ui.page.click("nav button:text('Models')")
    ui.page.wait_for_selector("#model-table tbody tr")


def test_the_store_is_a_table(ui: UiPage) -> None:
    models_page(ui)
    row = ui.page.locator("#model-table tbody tr", has_text="smollm2")
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells[0] == "smollm2:latest"
    assert cells[1].endswith("MB") and cells[2] and cells[3]  # size, quantization, parameters
    assert "completion" in cells[5]


def test_a_pull_shows_progress_to_100_and_the_model_appears(
    ui: UiPage, files: FileServer, tmp_path: Path
) -> None:
    page = ui.page
    models_page(ui)
    page.fill("#pull-name", files.url("/tiny.gguf"))
    page.check("#pull-insecure")
    page.click("#pull")
    page.wait_for_selector("#pull-status:text('Pulled')")
    assert page.inner_text("#pull-percent") == "100%"
    assert page.eval_on_selector("#pull-progress", "node => node.value") == 100
    page.wait_for_selector("#model-table tbody tr:has-text('tiny:latest')")


def test_a_loaded_model_is_listed_and_unloaded(ui: UiPage, server: object) -> None:
    import httpx

    # Load it (a chat of one token), then unload it from the page.
    httpx.post(
        f"{server.base}/v1/chat/completions",
        json={"model": "smollm2", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
        timeout=120,
    ).raise_for_status()
    page = ui.page
    models_page(ui)
    page.wait_for_selector("#loaded-table tbody tr:has-text('smollm2')")
    page.click("#loaded-table button:text('Unload')")
    page.wait_for_selector("#models-status:text('Unloaded')")
    expect(page.locator("#loaded-table tbody tr")).to_have_count(0)
