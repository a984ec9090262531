"""`owl distill` as a user runs it: a real process over a temp OWL_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import owl
from tests.tune.distill.conftest import prompts_file


@pytest.mark.slow
def test_the_cli_writes_the_dataset_and_reports(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = owl(
        home,
        "distill",
        "--teacher",
        "smollm2",
        "--student",
        "smollm2",
        "--prompts",
        str(prompts_file(tmp_path, 2)),
        "--no-tune",
        "--max-tokens",
        "64",
        "--threads",
        "1",
        "--ctx",
        "1024",
        "--name",
        "cli-run",
    )
    assert done.returncode == 0, done.stderr
    assert "of 2 answers to 2 prompts" in done.stdout
    assert (home / "tune" / "cli-run" / "latest" / "distill.jsonl").is_file()
    missing = owl(
        home,
        "distill",
        "--teacher",
        "smollm2",
        "--student",
        "smollm2",
        "--prompts",
        str(tmp_path / "none.txt"),
        "--no-tune",
    )
    assert missing.returncode == 1 and "cannot read prompts" in missing.stderr
