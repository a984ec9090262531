"""`owl quantize` as a user runs it: the result line, --json, warnings, errors and Ctrl-C."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import cli_env
from tests.quantize.test_quantize import uniform_imatrix
from tests.support.cli import owl

INTERRUPTED = Path(__file__).parents[1] / "support" / "quantize_interrupted.py"

pytestmark = pytest.mark.slow


def test_quantize_prints_the_new_model_and_its_cost(owl_env: Path) -> None:
    done = owl(owl_env, "quantize", "smollm2", "--type", "q8_0", "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["name"] == "smollm2:q8_0" and result["parent"] == "smollm2"
    assert result["type"] == "Q8_0" and result["requantized"] is True
    assert result["bits_per_weight"] == round(result["size"] * 8 / result["parameters"], 2)
    assert 8.5 < result["bits_per_weight"] < 9  # Q8_0 is 8.5 bits, plus its F32 norms
    assert "already quantized (Q4_1)" in done.stderr

    listed = json.loads(owl(owl_env, "list", "--json").stdout)
    assert "Q8_0" in [m["info"].get("quantization") for m in listed if m["tag"] == "q8_0"]
    again = owl(owl_env, "quantize", "smollm2", "-t", "Q4_0", "--name", "small")
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("quantized small: ")
    assert "bits per weight" in again.stdout and "(from smollm2, 93.8 MiB)" in again.stdout

    # A quantized model inherits its parent's license terms.
    verdict = owl(owl_env, "license", "check", "smollm2:q8_0", "--use", "commercial")
    assert verdict.returncode == 0, verdict.stderr
    assert verdict.stdout.startswith("conditional")
    assert "derived (quantized) from smollm2" in verdict.stdout


def test_errors_say_what_to_do(owl_env: Path) -> None:
    unknown = owl(owl_env, "quantize", "smollm2", "--type", "Q9_9")
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("error: unknown quantization type 'Q9_9'; owl offers Q8_0")
    missing = owl(owl_env, "quantize", "nonesuch", "--type", "Q8_0")
    assert missing.returncode == 1 and "model 'nonesuch' is not in the store" in missing.stderr
    iq = owl(owl_env, "quantize", "smollm2", "--type", "iq2_xxs")
    assert iq.returncode == 1 and "needs an importance matrix" in iq.stderr
    absent = owl(owl_env, "quantize", "smollm2", "--type", "IQ2_XXS", "--imatrix", "nope.dat")
    assert absent.returncode == 2 and "nope.dat" in absent.stderr  # a usage error
    assert not list((owl_env / "blobs").glob("partial-*"))


def test_ctrl_c_stops_at_once_and_leaves_nothing(owl_env: Path, tmp_path: Path) -> None:
    # The script Ctrl-Cs its own quantization at the first tensor and holds llama.cpp there:
    # exit 130 can only come from the interrupt felt while the C call is in flight. It runs
    # the stage function, as `owl quantize` does, inside the CLI's own entry point.
    assert owl(owl_env, "list").returncode == 0  # registers the bundled model
    blobs_before = len(list((owl_env / "blobs").glob("sha256-*")))
    listed = json.loads(owl(owl_env, "list", "--json").stdout)
    digest = next(m["files"][0]["digest"] for m in listed if m["name"] == "smollm2")
    blob = owl_env / "blobs" / digest.replace(":", "-")
    matrix = uniform_imatrix(blob, tmp_path / "smollm2.imatrix.gguf")
    command = [
        sys.executable,
        str(INTERRUPTED),
        "quantize-interrupted",
        "smollm2",
        "Q2_K_S",
        str(matrix),
    ]
    done = subprocess.run(
        command, env=cli_env(owl_env), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 130, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.strip().endswith("interrupted")
    assert re.search(r"at tensor 1 of \d+; temp files: \['partial-quantize-\w+'\]", done.stdout)
    assert not list((owl_env / "blobs").glob("partial-*"))
    assert len(list((owl_env / "blobs").glob("sha256-*"))) == blobs_before
    assert "q2_k_s" not in owl(owl_env, "list").stdout
