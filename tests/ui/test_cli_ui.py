"""`owl ui` opens the served page in the browser ($BROWSER, as Python's webbrowser reads it)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import cli_env
from tests.support.cli import OWL


def test_owl_ui_opens_the_served_page(tmp_path: Path) -> None:
    opened = tmp_path / "opened"
    browser = tmp_path / "browser"
    browser.write_text(f'#!/bin/sh\nprintf %s "$1" > {opened}\n')
    browser.chmod(0o755)
    env = {**cli_env(tmp_path / "home"), "BROWSER": str(browser), "OWL_HOST": "0.0.0.0"}
    done = subprocess.run(
        [OWL, "ui", "--port", "8123"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert opened.read_text() == "http://127.0.0.1:8123/"  # every address: opened at loopback
    assert "http://127.0.0.1:8123/" in done.stdout
