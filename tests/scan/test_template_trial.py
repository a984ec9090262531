"""The trial render in a child process under OS limits (owl.scan.template_trial): what no
in-process limit stops (one C call, an allocation) gets the child killed, is a high finding
naming the limit, and leaves owl and the file's other templates unharmed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from owl.engine.template import CHATML
from owl.scan import template_trial
from owl.scan.findings import Severity, Unverified
from owl.scan.templates import check_template, check_templates


def _nested_lists(depth: int) -> str:
    # Two lists of lists, 2**depth leaves each, built apart: `==` walks every leaf in one
    # C call, which the render's deadline (a trace function) never sees.
    return (
        "{% set ns = namespace(a=0, b=0) %}"
        f"{{% for i in range({depth}) %}}"
        "{% set ns.a = [ns.a, ns.a] %}{% set ns.b = [ns.b, ns.b] %}{% endfor %}"
        "{{ ns.a == ns.b }}" + CHATML
    )


@pytest.fixture
def one_cpu_second(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_trial, "STARTUP_CPU_SECONDS", 0.5)
    monkeypatch.setattr(template_trial, "CPU_SECONDS_PER_TEMPLATE", 0.1)


@pytest.mark.usefixtures("one_cpu_second")
def test_a_c_level_blow_up_is_killed_by_the_cpu_limit() -> None:
    findings = check_template(_nested_lists(80), file="f", location="t")
    assert [(f.severity, f.check) for f in findings] == [(Severity.HIGH, "template.resource")]
    assert "CPU-time limit" in findings[0].reason and "SIGXCPU" in findings[0].reason
    assert check_template(_nested_lists(3), file="f", location="t") == []  # the benign twin


@pytest.mark.usefixtures("one_cpu_second")
def test_the_templates_after_a_killed_one_are_still_rendered() -> None:
    templates = [
        ("a", CHATML),
        ("b", _nested_lists(80)),
        ("c", "{% for i in range(999999999) %}{% endfor %}"),
        ("d", CHATML),
    ]
    findings = check_templates(templates, file="f")
    assert [(f.location.split(",")[0], f.severity) for f in findings] == [
        ("b", Severity.HIGH),
        ("c", Severity.HIGH),
    ]
    assert "100,000-step loop limit" in findings[1].reason


# Only Linux enforces RLIMIT_AS (macOS accepts it and ignores it; Windows has no rlimits),
# so elsewhere there is no limit for this test to reach.
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux-only")
def test_an_allocation_past_the_memory_limit_is_high(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template_trial, "TRIAL_MEMORY_BYTES", 32 * 2**20)
    # 8 million items pass the size guards (each item is charged as one) but take 64 MiB.
    findings = check_template("{% set a = [0] * 8000000 %}{{ a|length }}", file="f", location="t")
    assert [(f.severity, f.check) for f in findings] == [(Severity.HIGH, "template.resource")]
    assert "memory limit (32 MiB of memory)" in findings[0].reason
    benign = "{% set a = [0] * 10 %}{{ a|length }}" + CHATML
    assert check_template(benign, file="f", location="t") == []


def test_a_failure_of_owls_own_is_unverified_not_a_verdict(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A child that cannot run the worker says nothing about the template: neither clean
    # nor unsafe, and the static findings made before it are kept.
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(Unverified, match="trial render") as caught:
        check_templates([("a", CHATML), ("b", "{{ request }}")], file="f")
    assert [f.severity for f in caught.value.findings] == [Severity.HIGH]


def test_the_child_imports_nothing_from_the_folder_being_scanned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `owl scan .` inside a downloaded model folder: its json.py must not run in the child.
    (tmp_path / "json.py").write_text("raise SystemExit('imported from the model folder')\n")
    monkeypatch.chdir(tmp_path)
    assert check_template(CHATML, file="f", location="t") == []
