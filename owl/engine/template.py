"""Chat templates from model files, rendered only in jinja2's ImmutableSandboxedEnvironment.

A chat template is code shipped inside an untrusted model file (CVE-2024-34359 ran code
through an unsandboxed one). The sandbox blocks attribute tricks and mutation; templates
get only the helpers Hugging Face's renderer gives them.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from owl.errors import TemplateError

# Used when a model file carries no template: ChatML, llama.cpp's fallback too.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _raise_exception(message: str) -> None:
    raise TemplateError(f"the model's chat template refused the conversation: {message}")


def _tojson(value: Any, indent: int | None = None, ensure_ascii: bool = False) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=ensure_ascii)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


class ChatTemplate:
    """A compiled, sandboxed chat template."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or CHATML
        self.is_fallback = source is None
        env = ImmutableSandboxedEnvironment(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[loopcontrols],
            undefined=jinja2.Undefined,
        )
        env.filters["tojson"] = _tojson
        env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now)
        try:
            self._template = env.from_string(self.source)
        except jinja2.TemplateError as err:
            raise TemplateError(f"the model's chat template does not compile: {err}") from err
        self._tokens = {"bos_token": bos_token, "eos_token": eos_token}

    def render(
        self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True, **extra: Any
    ) -> str:
        """The prompt text for `messages` (OpenAI-style dicts with role and content)."""
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                **self._tokens,
                **extra,
            )
        except TemplateError:
            raise
        except jinja2.exceptions.SecurityError as err:
            raise TemplateError(
                f"the model's chat template tried an unsafe operation ({err}); "
                "the model file may be malicious: do not use it"
            ) from err
        except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError) as err:
            raise TemplateError(f"the model's chat template failed to render: {err}") from err
