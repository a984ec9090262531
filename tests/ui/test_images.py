"""The images page against a real `owl serve` with a tiny random-weight Stable Diffusion
pipeline: the bar follows owl's progress events to steps/steps and the images appear; Stop
ends a drawing (the server stops it, so the next one draws)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.owl_server import Server
from tests.support.tiny_diffusion import ENDLESS_STEPS as ENDLESS
from tests.support.tiny_diffusion import TINY_SD as MODEL
from tests.support.tiny_diffusion import tiny_sd_server
from tests.ui.conftest import READY, UiPage, open_page

pytestmark = pytest.mark.slow  # the server loads a diffusers pipeline
LOAD_MS = 180_000  # the first drawing loads the pipeline: on a busy machine, a while
# OWL_SCREENSHOTS=docs saves the page for the README (docs/ui-images.png).
SCREENSHOTS = os.environ.get("OWL_SCREENSHOTS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with tiny_sd_server(tmp_path_factory.mktemp("ui-images")) as up:
        yield up


@pytest.fixture
def ui(browser: object, server: Server) -> Iterator[UiPage]:
    pages = open_page(browser, server.base)
    ui = next(pages)
    ui.page.wait_for_selector(READY)
    ui.page.click("nav button:text('Images')")
    ui.page.wait_for_selector(f"#draw-model option[value='{MODEL}']", state="attached")
    yield ui
    assert not ui.errors, ui.errors
    next(pages, None)


def fill(ui: UiPage, *, steps: int, n: int = 1) -> None:
    page = ui.page
    page.fill("#draw-prompt", "an owl at dusk <img src=x onerror=alert(1)>")
    page.fill("#draw-size", "64x64")
    page.fill("#draw-steps", str(steps))
    page.fill("#draw-seed", "7")
    page.fill("#draw-n", str(n))


def test_progress_reaches_every_step_and_the_images_appear(ui: UiPage) -> None:
    page = ui.page
    assert page.eval_on_selector_all("#draw-model option", "o => o.map(x => x.value)") == [MODEL]
    fill(ui, steps=3, n=2)
    page.click("#draw")
    page.wait_for_selector("#draw-status:text('Drew')", timeout=LOAD_MS)
    assert page.inner_text("#draw-status") == "Drew 2 images."
    assert page.inner_text("#draw-step") == "step 3/3"
    assert page.eval_on_selector("#draw-progress", "p => [p.value, p.max]") == [3, 3]
    images = page.locator("#drawn img")
    assert images.count() == 2
    sizes = images.evaluate_all(
        "all => all.map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
    )
    assert sizes == [[True, 64, 64], [True, 64, 64]]
    assert page.locator("#drawn figcaption").all_inner_texts()[0].startswith("seed 7 · 64x64")
    assert ui.dialogs == []
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "ui-images.png"))


def test_stop_ends_the_drawing_and_the_next_one_draws(ui: UiPage, server: Server) -> None:
    page = ui.page
    fill(ui, steps=ENDLESS)
    page.click("#draw")
    page.wait_for_function(
        "() => document.getElementById('draw-progress').value >= 2", timeout=LOAD_MS
    )
    page.click("#draw-stop")
    page.wait_for_selector("#draw-status:text('Stopped.')")
    assert page.locator("#drawn img").count() == 0
    # One drawing at a time on the server: this one finishes only if that one stopped.
    fill(ui, steps=1)
    page.click("#draw")
    page.wait_for_selector("#draw-status:text('Drew 1 image.')")
    assert f"a drawing with '{MODEL}' stopped: its client left" in server.log_text()


def test_a_phone_sees_the_page_without_scrolling_sideways(browser: object, server: Server) -> None:
    phone = {"width": 390, "height": 844}
    pages = open_page(browser, server.base, viewport=phone, is_mobile=True)
    ui = next(pages)
    ui.page.wait_for_selector(READY)
    ui.page.click("nav button:text('Images')")
    ui.page.wait_for_selector(f"#draw-model option[value='{MODEL}']", state="attached")
    for selector in ("#draw-prompt", "#draw", "#draw-stop", "#draw-steps"):
        box = ui.page.locator(selector).bounding_box()
        assert box is not None and 0 <= box["x"] and box["x"] + box["width"] <= phone["width"]
    assert ui.page.evaluate("() => document.documentElement.scrollWidth") <= phone["width"]
    assert not ui.errors, ui.errors
    next(pages, None)
