"""The static checks of chat templates (owl.scan.template_checks): escapes, gadgets, imports.

Each template goes through check_template, the way the scan meets it; what these find is
found by reading the parsed template, before anything renders it.
"""

from __future__ import annotations

import pytest

from owl.scan.findings import Severity
from owl.scan.templates import check_template

WHERE = "metadata key 'tokenizer.chat_template'"


CRITICAL = {
    "cve-2024-34359": "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "subclasses": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "attr filter": "{{ x|attr('__class__') }}",
    "lipsum": "{{ lipsum.__globals__['os'] }}",
    "joiner": "{{ joiner.__init__.__globals__ }}",
    "namespace": "{{ namespace.__init__.__globals__ }}",
    "template reference": "{{ self._TemplateReference__context }}",
    "mro without dunders": "{{ x.mro() }}",
    "frame walking": "{% for x in messages|map('list') %}{{ x.gi_frame.f_back }}{% endfor %}",
    "folded item": "{{ ''['_' ~ '_class_' ~ '_'] }}",
    "joined attr": "{{ ''|attr(['__cla', 'ss__']|join) }}",
    "set once": "{% set a = '__cla' %}{% set b = a ~ 'ss__' %}{{ messages[b] }}",
    "map attribute": "{{ messages|map(attribute='__class__')|list }}",
    "map attr": "{{ messages|map('attr', '__class__')|list }}",
    "selectattr path": "{{ messages|selectattr('role.__class__')|list }}",
    "format field": "{{ '{0.__class__.__base__}'.format(messages) }}",
}


@pytest.mark.parametrize("name", sorted(CRITICAL))
def test_sandbox_escapes_are_critical(name: str) -> None:
    findings = check_template(CRITICAL[name], file="evil.gguf", location=WHERE)
    critical = [f for f in findings if f.severity is Severity.CRITICAL]
    assert critical, findings
    assert all(f.file == "evil.gguf" and f.location.startswith(WHERE) for f in findings)
    assert critical[0].location == f"{WHERE}, line 1"


def test_findings_name_the_line_and_are_not_repeated() -> None:
    source = "hello\n{{ a.__class__ }}\n{{ b.__class__ }}{{ c.__class__ }}"
    findings = check_template(source, file="f", location=WHERE)
    assert len(findings) == 1
    assert findings[0].location == f"{WHERE}, line 2" and "'__class__'" in findings[0].reason


HIGH = {
    "request": ("{{ request }}", "template.gadget"),
    "config": ("{{ config.items() }}", "template.gadget"),
    "lipsum alone": ("{{ lipsum(1) }}", "template.gadget"),
    "builtins": ("{{ __builtins__ }}", "template.gadget"),
    "include": ("{% include 'x' %}", "template.import"),
    "import": ("{% import 'x' as y %}", "template.import"),
    "from": ("{% from 'x' import y %}", "template.import"),
    "extends": ("{% extends 'x' %}", "template.import"),
    "built name": ("{% set n = '_' ~ '_class_' ~ '_' %}", "template.attribute"),
    "computed attr": ("{{ x|attr(messages[0].content) }}", "template.attribute"),
    "private": ("{{ x._private }}", "template.attribute"),
}


@pytest.mark.parametrize("name", sorted(HIGH))
def test_gadgets_imports_and_hidden_names_are_high(name: str) -> None:
    source, check = HIGH[name]
    findings = check_template(source, file="f", location=WHERE)
    assert [f.severity for f in findings if f.check == check] == [Severity.HIGH]


def test_a_dunder_name_built_at_run_time_and_read_with_attr_is_found() -> None:
    source = "{% set n = '_' ~ '_class_' ~ '_' %}{{ ''|attr(n) }}"
    findings = check_template(source, file="f", location=WHERE)
    assert any(f.severity is Severity.CRITICAL for f in findings)
    # Without constants to follow, the computed name itself is the finding.
    source = "{% for p in ['_', '_class_', '_'] %}{% endfor %}{{ ''|attr(messages|join) }}"
    findings = check_template(source, file="f", location=WHERE)
    assert [f.severity for f in findings] == [Severity.HIGH]


def test_flask_names_a_template_assigns_are_its_own_variables() -> None:
    source = (
        "{% for g in messages %}{% set config = g.role %}{{ config }}{{ g.content }}{% endfor %}"
    )
    assert check_template(source, file="f", location=WHERE) == []
