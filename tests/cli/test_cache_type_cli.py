"""--cache-type-k/-v on owl run and owl serve: a type llama.cpp's cache does not take is one
line naming the flag and the choices, before any model loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import owl


@pytest.mark.parametrize("command", [["run", "smollm2", "hi"], ["serve", "--port", "9"]])
@pytest.mark.parametrize("flag", ["--cache-type-k", "--cache-type-v"])
def test_an_unknown_cache_type_is_refused_with_the_choices(
    tmp_path: Path, command: list[str], flag: str
) -> None:
    result = owl(tmp_path / "home", *command, flag, "q9")
    assert result.returncode == 1, result.stderr
    assert f"invalid {flag} q9" in result.stderr and "'q8_0'" in result.stderr
    assert "Traceback" not in result.stderr
