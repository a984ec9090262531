"""A model's details on the models page: what `owl show` says, its lineage, the license's
obligations for a chosen use, the scan's findings and the quantization report with its plot,
from a store that `owl quantize --report` and a hostile GGUF were put into; HTML in a
template or a license shows as text and runs nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import owl
from tests.support.gguf_edit import copy_with_template, shell_template
from tests.support.owl_server import Server, running_server
from tests.support.tiny_gguf import write_tiny_gguf
from tests.ui.conftest import READY, UiPage, open_page

pytestmark = pytest.mark.slow
HOSTILE_TEMPLATE_START = "<img src=x onerror=alert(1)>"
HOSTILE_LICENSE = "<b>bold</b> license <script>alert(2)</script>"
QUANTIZED = "smollm2:q8_0"
# OWL_SCREENSHOTS=docs saves the page for the README (docs/ui-details.png).
SCREENSHOTS = os.environ.get("OWL_SCREENSHOTS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("ui-details")
    home = root / "owl-home"
    plain = write_tiny_gguf(root / "plain.gguf", license=HOSTILE_LICENSE)
    template = HOSTILE_TEMPLATE_START + shell_template(root / "marker")
    hostile = copy_with_template(plain, root / "hostile.gguf", template)
    pulled = owl(home, "pull", str(hostile), "--name", "hostile")
    assert pulled.returncode == 0, pulled.stderr
    text = root / "text.txt"  # two 128-token chunks: the report's figures, quickly
    text.write_text(Path("/usr/share/common-licenses/Apache-2.0").read_text()[:1200])
    quantized = owl(
        home, "quantize", "smollm2", "-t", "Q8_0", "--report", "--text", str(text),
        "--ctx", "128", "--report-file", str(root / "report.md"), timeout=600,
    )  # fmt: skip
    assert quantized.returncode == 0, quantized.stderr
    with running_server(root) as running:
        yield running


@pytest.fixture
def ui(browser: object, server: Server) -> Iterator[UiPage]:
    pages = open_page(browser, server.base, viewport={"width": 1100, "height": 1500})
    ui = next(pages)
    ui.page.wait_for_selector(READY)
    ui.page.click("nav button:text('Models')")
    ui.page.wait_for_selector("#model-table tbody tr")
    yield ui
    assert not ui.errors, ui.errors
    assert ui.dialogs == []
    next(pages, None)


def open_details(ui: UiPage, name: str) -> object:
    ui.page.click(f"#model-table button[aria-label='Details of {name}']")
    ui.page.wait_for_selector("#model-details .details-name")
    ui.page.wait_for_selector("#license-verdict strong")
    return ui.page.locator("#model-details")


def facts(panel: object) -> dict[str, str]:
    keys = panel.locator(".facts dt").all_inner_texts()
    return dict(zip(keys, panel.locator(".facts dd").all_inner_texts(), strict=True))


def test_a_quantized_model_shows_its_facts_lineage_license_and_report(ui: UiPage) -> None:
    page = ui.page
    panel = open_details(ui, QUANTIZED)
    assert panel.locator(".details-name").inner_text() == QUANTIZED
    shown = facts(panel)
    assert shown["Architecture"].startswith("llama")
    assert shown["Quantization"] == "Q8_0"
    assert shown["Parameters"].startswith("135M") or shown["Parameters"].startswith("134")
    assert shown["Digest"].startswith("sha256:") and len(shown["Digest"]) == 71
    assert int(shown["Context length"].replace(",", "")) > 0
    assert "quantized from smollm2" in panel.locator(".lineage").inner_text()
    assert "<|im_start|>" in panel.locator("pre.template").inner_text()  # SmolLM2's ChatML

    verdict = page.locator("#license-verdict")
    assert verdict.locator("strong").inner_text() == "allowed"  # apache-2.0, personal use
    assert "Apache" in verdict.inner_text()
    page.select_option("#license-use", "commercial")
    page.wait_for_selector("#license-verdict:has-text('for commercial use')")
    assert verdict.locator("strong").inner_text() in ("allowed", "conditional")
    assert verdict.locator("ul.obligations li").count() >= 1  # Apache's notices to keep

    report = panel.locator("table.quality tbody tr")
    assert report.count() == 2  # the parent (reference) and its Q8_0, by size
    assert [report.nth(i).locator("td").nth(1).inner_text() for i in range(2)] == ["Q4_1", "Q8_0"]
    assert panel.locator("svg.plot circle").count() == 2
    assert "clean" in panel.locator("section", has_text="Scan").inner_text()
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "ui-details.png"), full_page=True)

    page.click("#model-details .close")
    assert page.locator("#model-details").is_hidden()


def test_html_in_a_template_and_a_license_shows_as_text_with_the_scan_findings(
    ui: UiPage,
) -> None:
    panel = open_details(ui, "hostile:latest")
    assert panel.locator("pre.template").inner_text().startswith(HOSTILE_TEMPLATE_START)
    assert HOSTILE_LICENSE in panel.inner_text()  # recorded, and in the verdict's reasons
    assert panel.locator(".verdict.unsafe").inner_text() == "unsafe"
    findings = panel.locator("ul.findings li").all_inner_texts()
    assert any("__globals__" in finding for finding in findings), findings
    for selector in ("img", "script", "b"):
        assert panel.locator(selector).count() == 0, selector


def test_the_routes_answer_bad_input_with_4xx(server: Server) -> None:
    base = f"{server.base}/v1/owl/models"
    assert httpx.get(f"{base}/no-such-model/details").status_code == 404
    answer = httpx.get(f"{base}/{QUANTIZED}/license", params={"use": "world-domination"})
    assert answer.status_code == 400 and "personal" in answer.text
    answer = httpx.get(f"{base}/{QUANTIZED}/license", params={"monthly_users": "-1"})
    assert answer.status_code == 400
    hosted = httpx.get(f"{base}/{QUANTIZED}/license", params={"use": "hosted"}).json()
    assert hosted["use"] == "hosted" and hosted["terms"]["id"] == "apache-2.0"


def test_a_phone_reads_the_details_without_scrolling_sideways(
    browser: object, server: Server
) -> None:
    phone = {"width": 390, "height": 844}
    pages = open_page(browser, server.base, viewport=phone, is_mobile=True)
    ui = next(pages)
    ui.page.wait_for_selector(READY)
    ui.page.click("nav button:text('Models')")
    ui.page.wait_for_selector("#model-table tbody tr")
    open_details(ui, QUANTIZED)
    ui.page.wait_for_selector("svg.plot circle")
    assert ui.page.evaluate("() => document.documentElement.scrollWidth") <= phone["width"]
    assert not ui.errors, ui.errors
    next(pages, None)
