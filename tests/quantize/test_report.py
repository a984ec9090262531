"""owl quantize --report: the measured quality cost, as a table and a plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.config import Settings
from owl.pull import pull
from owl.quantize import quantize
from owl.quantize.report import quality_report, write_report
from owl.store import Store
from tests.support.cli import owl


@pytest.fixture(scope="module")
def text(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The start of GPL-3: enough for a few 128-token chunks, quick to score."""
    path = tmp_path_factory.mktemp("text") / "gpl3-start.txt"
    path.write_text(Path("/usr/share/common-licenses/GPL-3").read_text()[:6000])
    return path


@pytest.fixture(scope="module")
def short_text(text: Path) -> Path:
    """Two 128-token chunks' worth: the command's test checks what it writes, not the
    figures (those are the test above's, on the whole of `text`)."""
    path = text.with_name("gpl3-shorter.txt")
    path.write_text(text.read_text()[:1200])
    return path


@pytest.mark.slow
def test_the_report_orders_the_types_by_quality(
    store: Store, settings: Settings, tmp_path: Path, text: Path
) -> None:
    settings = settings.model_copy(update={"threads": 1})
    parent = pull("smollm2", store=store, settings=settings)
    children = [
        quantize(parent, store=store, settings=settings, qtype=qtype) for qtype in ("Q8_0", "Q4_0")
    ]
    rows = quality_report(
        parent, children, store=store, settings=settings, text=text, ctx=128, decode_tokens=16
    )
    reference, q8, q4 = rows
    assert (reference.type, q8.type, q4.type) == ("Q4_1", "Q8_0", "Q4_0")
    assert (reference.kld_mean, reference.top1_agreement) == (0.0, 1.0)
    # Q8_0 keeps (almost) everything of its Q4_1 parent; Q4_0 loses more on every measure.
    assert 0 < q8.kld_mean < q4.kld_mean
    assert q8.top1_agreement > q4.top1_agreement
    assert q4.perplexity > q8.perplexity and q4.perplexity > reference.perplexity
    assert abs(q8.perplexity - reference.perplexity) < 2 * reference.perplexity_stderr
    assert q4.size_bytes < reference.size_bytes < q8.size_bytes
    assert all(row.decode_tokens_per_s > 0 for row in rows)

    table, image = write_report(rows, tmp_path / "report.md", text=text, ctx=128)
    written = table.read_text()
    assert written.count("\n| smollm2") == 3 and "± " in written and "%" in written
    assert image.read_bytes().startswith(b"\x89PNG")


@pytest.mark.slow
def test_owl_quantize_report_json(
    owl_env: Path, tmp_path: Path, short_text: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OWL_THREADS", "1")  # a second llama.cpp thread spins on a busy machine
    result = owl(
        owl_env, "quantize", "smollm2", "-t", "Q8_0", "--report", "--text", str(short_text),
        "--ctx", "128", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)  # one JSON object and nothing else
    assert [row["type"] for row in document["report"]] == ["Q4_1", "Q8_0"]
    assert (tmp_path / "quantize-smollm2.md").is_file()
    assert (tmp_path / "quantize-smollm2.png").is_file()
    missing = owl(owl_env, "quantize", "smollm2", "-t", "Q8_0", "--report", cwd=tmp_path)
    assert missing.returncode != 0 and "--text" in missing.stderr
