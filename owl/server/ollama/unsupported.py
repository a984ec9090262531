"""What the Ollama API accepts but owl's engine cannot do yet: refused here, in one place.

When the engine gains a feature (images, thinking, …), delete its check below and
translate the field in owl/server/ollama/protocol.py.
"""

from __future__ import annotations

from owl.errors import NotSupportedYet, TemplateError
from owl.server.ollama.protocol import ChatRequest, GenerateRequest, GenerationRequest


def _common(body: GenerationRequest) -> None:
    if body.think not in (None, False):
        raise NotSupportedYet(
            f"'{body.model}' does not support thinking; leave 'think' out or set it to false"
        )
    if body.logprobs:
        raise NotSupportedYet("'logprobs' are not supported yet on /api/*; leave them out")


def refuse_unsupported_chat(body: ChatRequest) -> None:
    """Raise NotSupportedYet for what a chat request asks that owl cannot do yet."""
    _common(body)


def refuse_unsupported_generate(body: GenerateRequest) -> None:
    """Raise NotSupportedYet (or TemplateError) for what a generate request cannot have."""
    _common(body)
    if body.images and body.raw:
        raise NotSupportedYet(
            "'images' with raw: true are not supported yet: owl places the images through "
            "the model's chat template; leave raw out"
        )
    if body.suffix:
        raise NotSupportedYet("'suffix' (fill-in-the-middle) is not supported yet")
    if body.template:
        # Ollama's templates are Go templates; owl renders the model's own Jinja template.
        raise TemplateError(
            "a request 'template' is not supported: owl renders the model's own chat template; "
            'send the fully formatted prompt with "raw": true instead'
        )
    if body.context:
        raise NotSupportedYet(
            "'context' (the deprecated token memory of /api/generate) is not supported; "
            "keep a conversation with /api/chat and its 'messages'"
        )
