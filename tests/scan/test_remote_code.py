"""Code a model asks its loader to run (owl.scan.remote_code): an `auto_map` in any JSON or
YAML config and a Python file are high findings; their benign twins are not flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.engine.template import CHATML
from owl.scan import scan
from owl.scan.detect import Kind, sniff
from owl.scan.findings import Severity

AUTO_MAP = {"AutoModelForCausalLM": "modeling_x.XModel", "AutoTokenizer": ["tok.T", None]}


def _json(path: Path, document: object) -> Path:
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["config.json", "processor_config.json", "blob"])
def test_an_auto_map_in_any_config_is_a_high_finding_per_class(tmp_path: Path, name: str) -> None:
    hostile = _json(tmp_path / name, {"model_type": "x", "auto_map": AUTO_MAP})
    assert sniff(hostile) is Kind.CODE_CONFIG
    report = scan([hostile])
    assert (report.verdict.value, report.exit_code) == ("unsafe", 1)
    assert [(f.severity, f.check, f.location) for f in report.findings] == [
        (Severity.HIGH, "code.auto_map", "auto_map.AutoModelForCausalLM"),
        (Severity.HIGH, "code.auto_map", "auto_map.AutoTokenizer"),
    ]
    assert "modeling_x.XModel" in report.findings[0].reason
    assert "tok.T" in report.findings[1].reason


def test_benign_configs_are_not_flagged(tmp_path: Path) -> None:
    plain = _json(tmp_path / "config.json", {"model_type": "llama", "hidden_size": 8})
    # The words in a value, or nested below the top level, are not an auto_map a loader reads.
    mention = _json(
        tmp_path / "card.json", {"description": "has no auto_map", "x": {"auto_map": 1}}
    )
    assert sniff(plain) is Kind.UNKNOWN
    assert sniff(mention) is Kind.UNKNOWN
    assert scan([plain, mention]).verdict.value == "no-supported-files"


def test_an_escaped_key_and_yaml_are_found(tmp_path: Path) -> None:
    escaped = tmp_path / "escaped.json"
    escaped.write_text('{"\\u0061uto_map": {"AutoModel": "evil.M"}}', encoding="utf-8")
    yaml_file = tmp_path / "config.yaml"
    yaml_file.write_text("auto_map:\n  AutoModel: evil.M\n", encoding="utf-8")
    for path in (escaped, yaml_file):
        report = scan([path])
        assert report.verdict.value == "unsafe", path
        assert report.findings[0].check == "code.auto_map"


def test_tokenizer_and_template_configs_report_their_auto_map_beside_their_template(
    tmp_path: Path,
) -> None:
    tokenizer = _json(
        tmp_path / "tokenizer_config.json", {"chat_template": CHATML, "auto_map": AUTO_MAP}
    )
    processor = _json(
        tmp_path / "chat_template.json", {"chat_template": CHATML, "auto_map": AUTO_MAP}
    )
    (tmp_path / "twin").mkdir()
    twin = _json(tmp_path / "twin" / "tokenizer_config.json", {"chat_template": CHATML})
    for path in (tokenizer, processor):
        checks = {finding.check for finding in scan([path]).findings}
        assert checks == {"code.auto_map"}, path
    assert scan([twin]).verdict.value == "clean"


def test_a_python_file_is_a_high_finding(tmp_path: Path) -> None:
    code = tmp_path / "modeling_x.py"
    code.write_text("import os\nos.system('true')\n", encoding="utf-8")
    assert sniff(code) is Kind.PYTHON
    report = scan([tmp_path])
    assert report.verdict.value == "unsafe"
    assert [(f.severity, f.check, f.file) for f in report.findings] == [
        (Severity.HIGH, "code.python", str(code))
    ]
