"""Chat templates found by content (owl.scan.template_config): a JSON or YAML file with a
top-level chat_template is checked whatever it is called; a file without one is not."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.engine.template import CHATML
from owl.scan import scan, template_config
from owl.scan.detect import Kind, sniff
from owl.scan.findings import Severity
from tests.scan.test_template_checks import CRITICAL

HOSTILE = CRITICAL["cve-2024-34359"]


def _json(path: Path, document: object, *, ensure_ascii: bool = False) -> Path:
    path.write_text(json.dumps(document, ensure_ascii=ensure_ascii), encoding="utf-8")
    return path


NAMES = ["chat_template.json", "processor_config.json", "tokenizer_config (1).json", "blob"]


@pytest.mark.parametrize("name", NAMES)
def test_a_json_template_is_found_whatever_its_name(tmp_path: Path, name: str) -> None:
    (tmp_path / "hostile").mkdir()
    (tmp_path / "benign").mkdir()
    hostile = _json(tmp_path / "hostile" / name, {"chat_template": HOSTILE})
    benign = tmp_path / "benign"
    _json(benign / name, {"chat_template": CHATML, "processor_class": "X"})
    assert sniff(hostile) is Kind.TEMPLATE_CONFIG
    report = scan([hostile])
    assert (report.verdict.value, report.exit_code) == ("unsafe", 1)
    assert report.findings[0].severity is Severity.CRITICAL
    assert report.findings[0].location.startswith("chat_template")
    clean = scan([benign])
    assert (clean.verdict.value, clean.exit_code, clean.findings) == ("clean", 0, [])


def test_named_templates_and_an_escaped_key_are_found(tmp_path: Path) -> None:
    named = {"chat_template": [{"name": "default", "template": CHATML},
                               {"name": "tool_use", "template": HOSTILE}]}  # fmt: skip
    report = scan([_json(tmp_path / "a.json", named)])
    assert report.verdict.value == "unsafe"
    assert report.findings[0].location.startswith("chat_template[tool_use]")
    # A parser reads "ch\u0061t_template" as chat_template; so must the detector.
    escaped = tmp_path / "b.json"
    escaped.write_text('{"ch\\u0061t_template": ' + json.dumps(HOSTILE) + "}")
    assert scan([escaped]).verdict.value == "unsafe"
    ascii_only = _json(tmp_path / "c.json", {"chat_template": CHATML + "é"}, ensure_ascii=True)
    assert scan([ascii_only]).verdict.value == "clean"


def test_yaml_templates(tmp_path: Path) -> None:
    hostile = tmp_path / "template.yaml"
    hostile.write_text("name: x\nchat_template: " + json.dumps(HOSTILE) + "\n")
    assert scan([hostile]).verdict.value == "unsafe"
    benign = tmp_path / "benign.yml"
    benign.write_text("name: x\nchat_template: |\n  " + CHATML + "\n")
    assert scan([benign]).verdict.value == "clean"


@pytest.mark.parametrize(
    "content",
    [
        '{"model_type": "llama", "hidden_size": 64}',  # config.json
        '{"model": {"vocab": {"\\u0120chat": 1}}, "note": "chat template"}',  # tokenizer.json
        '{"nested": {"chat_template": "{{ x.__class__ }}"}}',  # not top level: nothing reads it
        '["chat_template"]',
        '{"chat_template": "{{ x }}"',  # no runtime parses it
        "# Model card\n\nThis model uses a chat_template: see below.\n",
    ],
)
def test_files_without_a_top_level_template_are_not_template_files(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "file.json"
    path.write_text(content)
    assert sniff(path) is Kind.UNKNOWN
    assert scan([path]).verdict.value == "no-supported-files"


def test_odd_values_and_oversized_files_are_unverified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = _json(tmp_path / "odd.json", {"chat_template": 7})
    assert scan([odd]).verdict.value == "unverified"
    monkeypatch.setattr(template_config, "MAX_CONFIG_BYTES", 1000)
    big = _json(tmp_path / "big.json", {"chat_template": CHATML, "pad": "x" * 2000})
    report = scan([big])
    assert report.verdict.value == "unverified"
    assert "larger than 1,000 bytes" in (report.files[0].error or "")
    plain = _json(tmp_path / "plain.json", {"pad": "x" * 2000})
    assert scan([plain]).verdict.value == "no-supported-files"


def test_utf16_json_is_read_like_json_loads_reads_it(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(json.dumps({"chat_template": HOSTILE}).encode("utf-16"))
    assert scan([path]).verdict.value == "unsafe"
