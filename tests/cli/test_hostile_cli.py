"""The `owl` command under careless or hostile use (issue 12): bad flags and settings, an
OWL_HOME that cannot be used, non-UTF-8 arguments, a FIFO named like a model, a corrupt
manifest, a busy port. Each is one `error:` line that says what to do, and a non-zero exit;
never a traceback, never a hang."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.support.cli import OWL, owl
from tests.support.tiny_gguf import write_tiny_gguf

# Generous for a loaded machine, short enough that a hang fails the test rather than the run.
TIMEOUT_S = 60


def _run(
    home: Path, *args: str, env: dict[str, str] | None = None, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [*prefix, OWL, *args],
            capture_output=True,
            text=True,
            env={**cli_env(home), **(env or {})},
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"`owl {' '.join(args)}` did not end within {TIMEOUT_S} s")


def _assert_one_error_line(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


# --- flags and settings -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "needles"),
    [
        (("run", "smollm2", "--ctx", "-1", "hi"), {}, ("--ctx -1", "greater than or equal to 0")),
        (("run", "smollm2", "--threads", "0", "hi"), {}, ("--threads 0",)),
        (("serve", "--port", "99999"), {}, ("--port 99999", "65535")),
        (("serve", "--port", "-1"), {}, ("--port -1",)),
        (("serve", "--parallel", "0"), {}, ("--parallel 0",)),
        (("serve",), {"OWL_MAX_BODY": "abc"}, ("OWL_MAX_BODY='abc'", "unset it")),
        (("serve",), {"OWL_PORT": "http"}, ("OWL_PORT='http'",)),
        (("serve",), {"OWL_KEEP_ALIVE": "NaN"}, ("OWL_KEEP_ALIVE", "NaN", '"forever"')),
        (("list",), {"OWL_KEEP_ALIVE": "5 minutes"}, ("OWL_KEEP_ALIVE", "not a duration")),
    ],
)
def test_an_invalid_flag_or_setting_is_one_line_naming_it(
    owl_env: Path, args: tuple[str, ...], env: dict[str, str], needles: tuple[str, ...]
) -> None:
    _assert_one_error_line(_run(owl_env, *args, env=env), *needles)


@pytest.mark.parametrize("keep_alive", ["forever", "inf", "1e308", "9999999999h"])
def test_a_forever_keep_alive_is_a_valid_setting(owl_env: Path, keep_alive: str) -> None:
    # `owl ps` reads the settings, then finds no server on the discard port.
    result = _run(owl_env, "ps", "--port", "9", env={"OWL_KEEP_ALIVE": keep_alive})
    assert "no owl server" in _assert_one_error_line(result)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("run", "smollm2", "\udcff"), "the prompt"),  # argv byte 0xff, as Python hands it over
        (("run", "smollm2", "--system", "a\udcfe", "hi"), "--system"),
        (("run", "smollm2", "--stop", "\udcff", "hi"), "--stop"),
    ],
)
def test_a_non_utf8_argument_is_one_line(owl_env: Path, args: tuple[str, ...], needle: str) -> None:
    _assert_one_error_line(_run(owl_env, *args), needle, "UTF-8")


def test_a_file_name_that_is_not_utf8_is_one_line(owl_env: Path, tmp_path: Path) -> None:
    named = write_tiny_gguf(tmp_path / "m\udcff.gguf")  # the byte 0xff on disk
    result = _run(owl_env, "pull", str(named))
    _assert_one_error_line(result, "the argument", "is not valid UTF-8")


@pytest.mark.slow  # owl run loads the model before it reads the prompt
def test_a_non_utf8_prompt_on_stdin_is_one_line(owl_env: Path) -> None:
    result = subprocess.run(
        [OWL, "run", "smollm2"],
        input=b"hello \xff\n",
        capture_output=True,
        env=cli_env(owl_env),
        timeout=TIMEOUT_S,
    )
    assert result.returncode != 0 and b"Traceback" not in result.stderr
    assert result.stderr.decode().startswith("error: the prompt on stdin is not valid UTF-8")


# --- an OWL_HOME that cannot be used ----------------------------------------------------


def test_an_owl_home_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    home = tmp_path / "hostname"
    home.write_text("not a folder\n")
    for command in ("list", "verify", "pull", "rm"):
        args = (command,) if command in ("list", "verify") else (command, "smollm2")
        line = _assert_one_error_line(_run(home, *args), f"OWL_HOME {home} is a file")
        assert "point OWL_HOME at a folder" in line
    inside = home / "owl"
    _assert_one_error_line(_run(inside, "list"), f"is inside {home}, which is a file")


def _no_root_powers() -> tuple[str, ...]:
    """A prefix under which permission bits bind this process, as they do a normal user.

    Root ignores them (CAP_DAC_OVERRIDE); setpriv drops that power for the command it runs.
    """
    if os.geteuid() != 0:
        return ()
    setpriv = shutil.which("setpriv")
    prefix = (setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--") if setpriv else ()
    probe = subprocess.run([*prefix, "true"], capture_output=True) if prefix else None
    if probe is None or probe.returncode != 0:
        pytest.skip("running as root, and setpriv cannot drop root's power over permissions")
    return prefix


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, tuple[str, ...]]]:
    """A folder for OWL_HOME made read-only at the test's word, and the prefix that binds it."""
    prefix = _no_root_powers()
    home = tmp_path / "read-only-home"
    home.mkdir()
    yield home, prefix
    for path in [home, *home.rglob("*")]:  # let tmp_path's cleanup delete it
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _make_read_only(home: Path) -> None:
    for path in [home, *home.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.mark.parametrize(
    "args",
    [("list",), ("verify",), ("rm", "smollm2"), ("pull", "smollm2"), ("run", "smollm2", "hi")],
)
def test_an_empty_read_only_home_is_one_line(
    read_only: tuple[Path, tuple[str, ...]], args: tuple[str, ...]
) -> None:
    home, prefix = read_only
    _make_read_only(home)
    line = _assert_one_error_line(_run(home, *args, prefix=prefix), f"cannot use OWL_HOME {home}")
    assert "Permission denied" in line and "point OWL_HOME at another" in line


def test_a_read_only_store_reads_and_refuses_writes_in_one_line(
    read_only: tuple[Path, tuple[str, ...]], tmp_path: Path
) -> None:
    home, prefix = read_only
    assert _run(home, "list").returncode == 0  # registers the built-in model while writable
    _make_read_only(home)

    listed = _run(home, "list", "--json", prefix=prefix)
    assert listed.returncode == 0, listed.stderr
    assert "smollm2" in [model["name"] for model in json.loads(listed.stdout)]
    assert _run(home, "verify", prefix=prefix).returncode == 0  # reading needs no write
    tiny = write_tiny_gguf(tmp_path / "tiny.gguf")
    for args in (("rm", "smollm2"), ("pull", str(tiny)), ("scan", "smollm2")):
        line = _assert_one_error_line(_run(home, *args, prefix=prefix), "Permission denied")
        assert f"cannot use OWL_HOME {home}" in line
    names = [model["name"] for model in json.loads(_run(home, "list", "--json").stdout)]
    assert "smollm2" in names  # kept


# --- files that are not regular files ---------------------------------------------------


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    if not hasattr(os, "mkfifo"):
        pytest.skip("no FIFOs on this system")
    path = tmp_path / "f.gguf"
    os.mkfifo(path)  # reading it blocks until a writer comes, which none ever does
    return path


@pytest.mark.parametrize("command", [("scan",), ("scan", "--json"), ("show",), ("show", "--json")])
def test_a_fifo_named_like_a_model_is_refused_at_once(
    owl_env: Path, fifo: Path, command: tuple[str, ...]
) -> None:
    result = _run(owl_env, *command, str(fifo))
    _assert_one_error_line(result, "not a regular file", str(fifo))


def test_pull_and_run_refuse_a_fifo_too(owl_env: Path, fifo: Path) -> None:
    for args in (("pull", str(fifo)), ("run", str(fifo), "hi")):
        _assert_one_error_line(_run(owl_env, *args), "is not a file")


def test_a_fifo_inside_a_scanned_folder_is_skipped(owl_env: Path, tmp_path: Path) -> None:
    folder = tmp_path / "model"
    write_tiny_gguf(folder / "model.gguf")
    os.mkfifo(folder / "pipe.gguf")
    result = _run(owl_env, "scan", "--json", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    assert [file["file"] for file in json.loads(result.stdout)["files"]] == [
        str(folder / "model.gguf")
    ]


# --- the store: a corrupt manifest, the built-in model on a fresh home --------------------


def test_verify_reports_an_unreadable_manifest_and_fails(owl_env: Path, tmp_path: Path) -> None:
    assert owl(owl_env, "pull", str(write_tiny_gguf(tmp_path / "tiny.gguf"))).returncode == 0
    broken = owl_env / "manifests" / "broken" / "latest.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"name": "broken", ')

    checked = _run(owl_env, "verify")
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert "unreadable broken:latest" in checked.stdout and "delete it" in checked.stdout
    assert "ok      tiny" in checked.stdout  # the other models are still checked
    as_json = json.loads(_run(owl_env, "verify", "--json").stdout)
    assert {check["model"]: check["status"] for check in as_json}["broken:latest"] == "unreadable"
    _assert_one_error_line(_run(owl_env, "verify", "broken"), "unreadable", "delete it")


def test_verify_and_rm_see_the_built_in_model_on_a_fresh_home(owl_env: Path) -> None:
    checked = _run(owl_env, "verify", "--json")
    assert checked.returncode == 0, checked.stderr
    assert "smollm2" in {check["model"] for check in json.loads(checked.stdout)}

    fresh = owl_env.parent / "fresh-home"
    removed = _run(fresh, "rm", "smollm2")
    assert removed.returncode == 0, removed.stderr
    assert "deleted smollm2" in removed.stdout
    names = [model["name"] for model in json.loads(_run(fresh, "list", "--json").stdout)]
    assert "smollm2" not in names  # and it stays deleted


# --- owl serve on a busy port -------------------------------------------------------------


def test_serve_on_a_busy_port_says_so_and_suggests_another(owl_env: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run(owl_env, "serve", "--host", "127.0.0.1", "--port", str(port))
    _assert_one_error_line(result, f"port {port} on 127.0.0.1 is in use", "--port")
