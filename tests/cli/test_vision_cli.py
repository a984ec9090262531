"""`owl pull --mmproj`, `owl show` and `owl list` of a vision model, as a user runs them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from owl.store.lock import LOCK_FILE, read_lock
from tests.conftest import cli_env
from tests.support.cli import OWL, owl
from tests.support.tiny_gguf import write_tiny_gguf
from tests.support.tiny_mmproj import IMAGE_SIZE, PATCH_SIZE, PROJECTOR_TYPE, write_tiny_mmproj


def test_pull_with_mmproj_then_show_and_list_say_it_sees(owl_env: Path, tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    mmproj = write_tiny_mmproj(tmp_path / "mmproj-tiny-f16.gguf")

    pulled = owl(owl_env, "pull", str(model), "--mmproj", str(mmproj))
    assert pulled.returncode == 0, pulled.stderr
    assert "pulled tiny" in pulled.stdout and "projector: mmproj-tiny-f16.gguf" in pulled.stdout

    shown = json.loads(owl(owl_env, "show", "tiny", "--json").stdout)
    assert "vision" in shown["capabilities"] and "chat" in shown["capabilities"]
    projector = shown["projector"]
    assert projector["file"] == "mmproj-tiny-f16.gguf"
    assert projector["size"] == mmproj.stat().st_size
    assert (projector["image_size"], projector["patch_size"]) == (IMAGE_SIZE, PATCH_SIZE)
    assert (projector["projector_type"], projector["projection_dim"]) == (PROJECTOR_TYPE, 8)

    text = owl(owl_env, "show", "tiny").stdout
    assert "mmproj-tiny-f16.gguf" in text and PROJECTOR_TYPE in text  # (the table wraps lines)
    assert "vision" in text.split("capabilities", 1)[1].splitlines()[0]

    # A terminal wide enough for the table not to shorten its cells (80 columns would).
    wide = {**cli_env(owl_env), "COLUMNS": "160"}
    listed = subprocess.run([OWL, "list"], capture_output=True, text=True, env=wide).stdout
    row = next(line for line in listed.splitlines() if line.split()[:1] == ["tiny"])
    assert "gguf+vision" in row


def test_mmproj_added_to_a_pinned_model_pins_it_too(owl_env: Path, tmp_path: Path) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    assert owl(owl_env, "pull", str(model)).returncode == 0
    project = tmp_path / "project"
    project.mkdir()
    assert owl(owl_env, "lock", "tiny", cwd=project).returncode == 0
    assert len(read_lock(project / LOCK_FILE).models["tiny"].files) == 1

    mmproj = write_tiny_mmproj(tmp_path / "mmproj-tiny-f16.gguf")
    added = owl(owl_env, "pull", "tiny", "--mmproj", str(mmproj), cwd=project)

    assert added.returncode == 0, added.stderr
    assert f"{LOCK_FILE}: 'tiny' now pins its projector too" in added.stdout
    pinned = read_lock(project / LOCK_FILE).models["tiny"].files
    assert [entry.role for entry in pinned] == ["model", "projector"]
    assert owl(owl_env, "show", "tiny").returncode == 0


def test_a_wrong_projector_is_a_clear_error_without_a_traceback(
    owl_env: Path, tmp_path: Path
) -> None:
    model = write_tiny_gguf(tmp_path / "tiny.gguf")
    wide = write_tiny_mmproj(tmp_path / "mmproj-wide.gguf", projection_dim=16)
    refused = owl(owl_env, "pull", str(model), "--mmproj", str(wide))
    assert refused.returncode != 0
    assert "another model's projector" in refused.stderr.replace("\n", " ")
    assert "Traceback" not in refused.stderr
    listed = json.loads(owl(owl_env, "list", "--json").stdout)
    assert "tiny" not in {entry["name"] for entry in listed}  # nothing of it was kept
