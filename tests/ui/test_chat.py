"""The chat page with the bundled model: streamed answers, stop, token probabilities and
conversations kept in IndexedDB."""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.ui.conftest import READY, UiPage

pytestmark = pytest.mark.slow

ANSWER = "#messages .message.assistant .content"


def ask(ui: UiPage, text: str, *, max_tokens: int = 16, why: bool = False) -> None:
    page = ui.page
    page.fill("#temperature", "0")
    page.fill("#max-tokens", str(max_tokens))
    if why:
        page.check("#why")
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")  # the keyboard alone sends


def test_a_streamed_answer_appears_and_is_kept(ui: UiPage) -> None:
    page = ui.page
    assert page.input_value("#model") == "smollm2"
    ask(ui, "Say hello.")
    page.wait_for_selector("#chat-status:text('Done.')")
    answer = page.locator(ANSWER).last.inner_text()
    assert answer.strip(), "no answer streamed"
    assert page.locator("#messages .message.user").last.inner_text().endswith("Say hello.")

    page.reload()
    page.wait_for_selector(READY)
    assert page.locator(ANSWER).last.inner_text() == answer  # kept in IndexedDB
    assert page.locator("#conversation-list li").count() == 1


def test_stop_ends_the_answer_and_the_server_answers_again(ui: UiPage) -> None:
    page = ui.page
    ask(ui, "Write a long story about a lighthouse keeper.", max_tokens=400)
    expect(page.locator(ANSWER).last).to_have_text(re.compile(r"\S"))  # streaming began
    page.click("#stop")
    page.wait_for_selector("#chat-status:text('Stopped.')")
    assert page.locator("#messages .message.assistant .note").inner_text() == "stopped"
    assert page.is_disabled("#stop") and page.is_enabled("#send")

    ask(ui, "Say hi.")
    page.wait_for_selector("#chat-status:text('Done.')")
    assert page.locator(ANSWER).last.inner_text().strip()


def test_a_token_shows_its_probability_and_alternatives(ui: UiPage) -> None:
    page = ui.page
    ask(ui, "Name a colour.", max_tokens=8, why=True)
    page.wait_for_selector("#chat-status:text('Done.')")
    page.click(".message.assistant .why summary")
    tokens = page.locator(".message.assistant .token")
    assert tokens.count() >= 1
    tokens.first.click()
    assert page.is_visible("#token-panel")
    assert page.inner_text("#token-prob").endswith("%")
    alternatives = page.locator("#token-alternatives tr")
    assert alternatives.count() >= 2
    assert page.locator("#token-alternatives tr.chosen").count() == 1


def test_conversations_are_renamed_exported_and_deleted(ui: UiPage) -> None:
    page = ui.page
    ask(ui, "Count to three.", max_tokens=8)
    page.wait_for_selector("#chat-status:text('Done.')")
    ui.prompt_answers.append("Counting")
    page.click("#conversation-list li.current button:text('Rename')")
    page.wait_for_selector("#conversation-list li.current .open:text('Counting')")

    with page.expect_download() as download:
        page.click("#conversation-list li.current button:text('Export')")
    exported = json.loads(download.value.path().read_text())
    assert exported["title"] == "Counting"
    assert [message["role"] for message in exported["messages"]] == ["user", "assistant"]

    page.click("#conversation-list li.current button:text('Delete')")
    expect(page.locator("#conversation-list li")).to_have_count(0)
    assert page.locator("#messages li").count() == 0
