"""The page at a phone's width, with the keyboard alone, in the dark and light themes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.owl_server import Server
from tests.ui.conftest import READY, UiPage, open_page

pytestmark = pytest.mark.slow

PHONE = {"width": 390, "height": 844}


@pytest.fixture
def phone(browser: object, server: Server) -> Iterator[UiPage]:
    pages = open_page(browser, server.base, viewport=PHONE, has_touch=True, is_mobile=True)
    ui = next(pages)
    ui.page.wait_for_selector(READY)
    yield ui
    assert not ui.errors, ui.errors
    next(pages, None)


def test_a_phone_sees_every_control_without_scrolling_sideways(phone: UiPage) -> None:
    page = phone.page
    for selector in ("#prompt", "#send", "#stop", "#model", "#new-chat"):
        box = page.locator(selector).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]
    page.click("nav button:text('Models')")
    page.wait_for_selector("#model-table tbody tr")
    assert page.evaluate("() => document.documentElement.scrollWidth") <= PHONE["width"]


def test_the_keyboard_alone_reaches_the_prompt_and_sends(ui: UiPage) -> None:
    page = ui.page
    page.fill("#max-tokens", "4")
    page.locator("body").focus()
    for _ in range(40):  # Tab through the controls until the prompt has the focus
        page.keyboard.press("Tab")
        if page.evaluate("() => document.activeElement.id") == "prompt":
            break
    else:
        pytest.fail("Tab never reached the prompt")
    page.keyboard.type("Hi")
    page.keyboard.press("Enter")
    page.wait_for_selector("#chat-status:text('Done.')")
    # The models page, by keyboard too.
    page.locator("nav button:text('Models')").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("#model-table tbody tr")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_theme_follows_the_system(browser: object, server: Server, scheme: str) -> None:
    pages = open_page(browser, server.base, color_scheme=scheme)
    ui = next(pages)
    ui.page.wait_for_selector(READY)
    background = ui.page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    red, green, blue = (int(part) for part in background[4:-1].split(","))
    assert (red + green + blue < 3 * 128) == (scheme == "dark"), background
    next(pages, None)
