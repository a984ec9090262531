"""The chat template environment: Hugging Face's helpers, size guards, bounded rendering."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from owl.errors import TemplateError
from owl.formats import inspect
from owl.formats.jinja_sandbox import (
    MAX_VALUE_CHARS,
    RenderLimitExceeded,
    ValueTooLarge,
    render_bounded,
    sandboxed_environment,
)

CONTEXT: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}


def render(source: str, **context: Any) -> str:
    return render_bounded(
        sandboxed_environment().from_string(source),
        {**CONTEXT, **context},
        seconds=5.0,
        max_chars=1_000_000,
    )


def test_ordinary_uses_of_guarded_operations_still_work() -> None:
    source = (
        "{{ '=' * 3 }}|{{ ' ' * 2 }}x|{{ 'a' ~ 1 }}|{{ 'a' + 'b' }}|{{ [1] + [2] }}|{{ 2 ** 10 }}"
        "|{{ 7 % 3 }}|{{ '%03d' % 7 }}|{{ '{:>3}'.format('a') }}|{{ 'a'.center(3, '*') }}"
        "|{{ 'a-b'.replace('-', '+') }}|{{ ', '.join(['x', 'y']) }}|{{ [1, 2]|join('/') }}"
        "|{{ 'x'|indent(2, true) }}|{{ 'hi'|upper }}|{{ [[1], [2]]|sum(start=[]) }}"
        "|{{ [1, 2, 3]|batch(2)|list }}|{{ '%s!'|format('yes') }}|{{ {'a': [1]} }}"
    )
    assert render(source) == (
        "===|  x|a1|ab|[1, 2]|1024|1|007|  a|*a*|a+b|x, y|1/2|  x|HI|[1, 2]"
        "|[[1, 2], [3]]|yes!|{'a': [1]}"
    )


def test_hugging_face_helpers() -> None:
    value = {"b": "é", "a": [1, 2]}
    assert render("{{ v|tojson }}", v=value) == json.dumps(value, ensure_ascii=False)
    assert render("{{ v|tojson(indent=2, sort_keys=true) }}", v=value) == json.dumps(
        value, ensure_ascii=False, indent=2, sort_keys=True
    )
    assert render("{{ v|tojson(ensure_ascii=true) }}", v=value) == json.dumps(value)
    assert render("{{ strftime_now('%Y')|length }}") == "4"
    assert render("{% generation %}{{ messages[0].content }}{% endgeneration %}!") == "hi!"
    assert render("{% for i in range(5) %}{% if i > 1 %}{% break %}{% endif %}{{ i }}{% endfor %}")
    with pytest.raises(TemplateError, match="refused the conversation: no system role"):
        render("{{ raise_exception('no system role') }}")


@pytest.mark.parametrize(
    "bomb",
    [
        "{{ 'a' * 1000000000 }}",
        "{{ [0] * 1000000000 }}",
        "{{ 1000000000 * 'a' }}",
        "{{ 9 ** (9 ** 9) }}",
        "{{ (10 ** 1000) * (10 ** 1000) }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '%*d' % (1000000000, 1) }}",
        "{{ '{:>1000000000}'.format(1) }}",
        "{{ '{:>{w}}'.format(1, w=1000000000) }}",
        "{{ 'a'.center(1000000000) }}",
        "{{ 'a'.zfill(1000000000) }}",
        "{{ ('a'|safe).center(1000000000) }}",
        "{{ '\t'.expandtabs(1000000000) }}",
        "{{ 'a'|center(1000000000) }}",
        "{{ 'a\na'|indent(1000000000) }}",
        "{{ [1]|batch(1000000000, 0)|list }}",
        "{{ '%1000000000s'|format('a') }}",
        # Doubling by every operation that joins: 2 ** 40 characters if nothing stops it.
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s + ns.s %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s.replace('a', 'aa').replace('b', 'bb') %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = [ns.s, ns.s]|join %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s.join(['', '', '']) %}{% endfor %}",
        "{% macro twice(x) %}{{ x }}{{ x }}{% endmacro %}{% set ns = namespace(s='ab') %}"
        "{% for i in range(40) %}{% set ns.s = twice(ns.s) %}{% endfor %}",
        "{% set ns = namespace(s='ab') %}{% for i in range(40) %}"
        "{% set ns.s %}{{ ns.s }}{{ ns.s }}{% endset %}{% endfor %}",
        # Shared references: a 40-deep list of [x, x] prints 2 ** 40 items.
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
        "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
        "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|tojson }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
        "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l|string }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
        "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ 'x' ~ ns.l }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
        "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ '%s' % (ns.l,) }}",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}"
        "{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ '{}'.format(ns.l) }}",
        "{% set big = range(100000)|list %}{{ ([big] * 1000)|sum(start=[])|length }}",
    ],
)
def test_size_guards_stop_blow_ups_before_they_allocate(bomb: str) -> None:
    template = sandboxed_environment().from_string(bomb)
    started = time.monotonic()
    with pytest.raises(ValueTooLarge, match=f"more than {MAX_VALUE_CHARS:,} characters|bits"):
        template.render(CONTEXT)  # the guards hold without render_bounded too
    assert time.monotonic() - started < 1.0
    with pytest.raises(RenderLimitExceeded, match="stopped"):
        render(bomb)


def test_value_too_large_is_a_security_error_and_limits_are_template_errors() -> None:
    assert issubclass(ValueTooLarge, SecurityError)
    assert issubclass(RenderLimitExceeded, TemplateError)


@pytest.mark.parametrize(
    "loop",
    [
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(60) }}",
        "{% for i in range(100000) %}{{ range(100000)|select('odd')|list|length }}{% endfor %}",
    ],
)
def test_the_deadline_holds_in_loops_that_print_nothing(loop: str) -> None:
    template = sandboxed_environment().from_string(loop)
    started = time.monotonic()
    with pytest.raises(RenderLimitExceeded, match="ran longer than 0.3 s"):
        render_bounded(template, {}, seconds=0.3, max_chars=1000)
    assert time.monotonic() - started < 2.0


def test_output_is_bounded() -> None:
    template = sandboxed_environment().from_string(
        "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"
    )
    with pytest.raises(RenderLimitExceeded, match="wrote more than 10,000 characters"):
        render_bounded(template, {}, seconds=10, max_chars=10_000)


def test_all_a_render_makes_is_budgeted() -> None:
    # Each value is allowed alone; together they would fill memory before any deadline.
    template = sandboxed_environment().from_string(
        "{% set ns = namespace(kept=[]) %}{% for i in range(100000) %}"
        "{% set ns.kept = ns.kept + [('x' ~ i).ljust(1000000)] %}{% endfor %}"
    )
    started = time.monotonic()
    with pytest.raises(RenderLimitExceeded, match="more than 16,000,000 characters and items"):
        render_bounded(template, {}, seconds=30, max_chars=1_000_000)
    assert time.monotonic() - started < 2.0


def test_a_long_conversation_renders_as_in_jinja2s_own_sandbox(bundled_gguf: Path) -> None:
    source = inspect(bundled_gguf).chat_template
    messages = [
        {"role": ("user", "assistant")[i % 2], "content": f"message {i} " * 50} for i in range(2000)
    ]
    context = {"messages": messages, "add_generation_prompt": True}
    expected = ImmutableSandboxedEnvironment().from_string(source).render(context)
    template = sandboxed_environment().from_string(source)
    for _ in range(2):  # the budget is per render
        assert render_bounded(template, context, seconds=10, max_chars=len(expected)) == expected


def test_recursion_is_a_limit_not_a_crash() -> None:
    template = sandboxed_environment().from_string(
        "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}"
    )
    with pytest.raises(RenderLimitExceeded, match="nests calls too deeply"):
        render_bounded(template, {}, seconds=5, max_chars=1000)


def test_the_previous_trace_function_is_put_back() -> None:
    calls: list[str] = []

    def tracer(frame: Any, event: str, arg: Any) -> None:
        calls.append(event)

    template = sandboxed_environment().from_string("{% for i in range(3) %}{{ i }}{% endfor %}")
    previous = sys.gettrace()
    sys.settrace(tracer)
    try:
        assert render_bounded(template, {}, seconds=5, max_chars=100) == "012"
        assert sys.gettrace() is tracer
        with pytest.raises(RenderLimitExceeded):
            render_bounded(template, {}, seconds=5, max_chars=1)
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(previous)


def test_the_sandbox_still_refuses_private_attributes() -> None:
    with pytest.raises(SecurityError):
        render("{{ cycler.__init__.__globals__.os.popen('id').read() }}")
    with pytest.raises(SecurityError):
        render("{% set x = messages.append(1) %}")
