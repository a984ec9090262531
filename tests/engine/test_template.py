"""Chat templates render in jinja2's immutable sandbox; escapes fail with a clear error."""

from __future__ import annotations

import pytest

from owl.engine.template import CHATML, ChatTemplate
from owl.errors import TemplateError

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
