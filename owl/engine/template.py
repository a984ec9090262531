"""Chat templates from model files, rendered only in the sandbox of owl.formats.jinja_sandbox.

A chat template is code shipped inside an untrusted model file (CVE-2024-34359 ran code
through an unsandboxed one). jinja2's ImmutableSandboxedEnvironment blocks attribute
tricks and mutation; owl's environment adds size guards, and every render has a deadline
and an output bound; templates get only the helpers Hugging Face's renderer gives them.
"""

from __future__ import annotations

from typing import Any

from jinja2.exceptions import SecurityError

from owl.errors import TemplateError
from owl.formats.jinja_sandbox import MAX_VALUE_CHARS, render_bounded, sandboxed_environment

# Used when a model file carries no template: ChatML, llama.cpp's fallback too.
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Generous: real templates render a thousand-message conversation in tens of milliseconds,
# and no context window holds 8 MiB of text (a million tokens is about 4 MiB). The limits
# only stop a hostile template from holding a server thread or its memory.
RENDER_SECONDS = 2.0
RENDER_MAX_CHARS = MAX_VALUE_CHARS


class ChatTemplate:
    """A compiled, sandboxed chat template."""

    def __init__(self, source: str | None, *, bos_token: str = "", eos_token: str = "") -> None:
        self.source = source or CHATML
        self.is_fallback = source is None
        try:
            self._template = sandboxed_environment().from_string(self.source)
        except Exception as err:  # syntax, unknown filters, nesting past Python's limits
            raise TemplateError(f"the model's chat template does not compile: {err}") from err
        self._tokens = {"bos_token": bos_token, "eos_token": eos_token}

    def render(
        self, messages: list[dict[str, Any]], *, add_generation_prompt: bool = True, **extra: Any
    ) -> str:
        """The prompt text for `messages` (OpenAI-style dicts with role and content)."""
        context = {
            "messages": messages,
            "add_generation_prompt": add_generation_prompt,
            **self._tokens,
            **extra,
        }
        try:
            return render_bounded(
                self._template, context, seconds=RENDER_SECONDS, max_chars=RENDER_MAX_CHARS
            )
        except TemplateError:
            raise  # a refusal or a limit, each saying so
        except SecurityError as err:
            raise TemplateError(
                f"the model's chat template tried an unsafe operation ({err}); "
                "the model file may be malicious: do not use it"
            ) from err
        except Exception as err:  # a template can fail like any code: type, key, zero, …
            raise TemplateError(f"the model's chat template failed to render: {err}") from err
