"""Chat templates render in jinja2's immutable sandbox; escapes fail with a clear error."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from owl.engine.template import CHATML, RENDER_SECONDS, ChatTemplate
from owl.errors import TemplateError
from owl.formats.jinja_sandbox import RenderLimitExceeded

MESSAGES = [{"role": "user", "content": "hi"}]


def test_chatml_fallback_renders() -> None:
    template = ChatTemplate(None)
    assert template.is_fallback and template.source == CHATML
    assert template.render(MESSAGES) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_hf_helpers_are_available() -> None:
    source = (
        "{{ bos_token }}{% for m in messages %}{{ m['content'] | tojson }}{% endfor %}"
        "{% if add_generation_prompt %}{{ strftime_now('%Y') | length }}{% endif %}"
    )
    assert ChatTemplate(source, bos_token="<s>").render(MESSAGES) == '<s>"hi"4'


@pytest.mark.parametrize(
    "gadget",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{% set x = messages.append({'role': 'user'}) %}",
        "{{ lipsum.__globals__['os'] }}",
    ],
)
def test_sandbox_escapes_are_refused(gadget: str) -> None:
    with pytest.raises(TemplateError):
        ChatTemplate(gadget).render(MESSAGES)


def test_unsafe_attributes_render_as_undefined_not_as_objects() -> None:
    rendered = ChatTemplate("[{{ messages.__class__ }}][{{ messages.pop }}]").render(MESSAGES)
    assert "class" not in rendered and "built-in" not in rendered


def test_raise_exception_and_syntax_errors_are_template_errors() -> None:
    with pytest.raises(TemplateError, match="refused the conversation: roles must alternate"):
        ChatTemplate("{{ raise_exception('roles must alternate') }}").render(MESSAGES)
    with pytest.raises(TemplateError, match="does not compile"):
        ChatTemplate("{% for %}")


def test_the_cve_2024_34359_payload_never_runs_its_command(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for payload in (
        "{{ cycler.__init__.__globals__.os.popen('touch " + str(marker) + "').read() }}",
        "{{ joiner.__init__.__globals__.os.system('touch " + str(marker) + "') }}",
        "{{ (''|attr('__class__')|attr('__base__')).__subclasses__() }}",
        "{{ self._TemplateReference__context.cycler.__init__.__globals__.os.popen('touch "
        + str(marker)
        + "').read() }}",
    ):
        with pytest.raises(TemplateError):
            ChatTemplate(payload).render(MESSAGES)
    assert not marker.exists()


def test_a_cpu_bomb_stops_at_the_time_limit() -> None:
    bomb = ChatTemplate(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    )
    started = time.monotonic()
    with pytest.raises(RenderLimitExceeded, match="ran longer than"):
        bomb.render(MESSAGES)
    assert time.monotonic() - started < RENDER_SECONDS + 3


def test_a_memory_bomb_is_refused_before_it_allocates() -> None:
    with pytest.raises(TemplateError, match="would make more than"):
        ChatTemplate("{{ 'a' * 1000000000 }}").render(MESSAGES)


def test_ordinary_render_failures_are_template_errors() -> None:
    for source in ("{{ 1 / 0 }}", "{{ messages[5]['x'] + 1 }}", "{{ 1 + [] }}"):
        with pytest.raises(TemplateError, match="failed to render"):
            ChatTemplate(source).render(MESSAGES)


def test_tools_and_hugging_face_variables_reach_the_template() -> None:
    source = (
        "{% set ns = namespace(names=[]) %}{% for tool in tools %}"
        "{% set ns.names = ns.names + [tool.function.name] %}{% endfor %}"
        "{{ ns.names|join(',') }}{% for m in messages %}|{{ m.role }}"
        "{% if not loop.last %};{% endif %}{% endfor %}{{ eos_token }}"
    )
    tools = [{"type": "function", "function": {"name": n}} for n in ("a", "b")]
    rendered = ChatTemplate(source, eos_token="</s>").render(MESSAGES * 2, tools=tools)
    assert rendered == "a,b|user;|user</s>"
