"""OpenAI's image stream (`"stream": true` on /v1/images/generations) as server-sent events
with names, as OpenAI sends them: `event: image_generation.completed` then `data: {…}`.

owl adds `image_generation.progress` ({step, steps}) after each denoising step, what `owl
draw`'s progress bar shows; clients that know only OpenAI's events skip it. One
`image_generation.completed` follows for each image, with owl's `index` and `seed`.
OpenAI's `image_generation.partial_image` is not sent: a partial image would cost a VAE
decode at every step it is asked for, and the progress event tells how far the drawing is.
"""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncGenerator
from typing import Any

from owl.server.framing import SSE, named_sse
from owl.server.images import Drawn, Step

PROGRESS = "image_generation.progress"
COMPLETED = "image_generation.completed"
_NO_TOKENS = {
    "input_tokens": 0,
    "input_tokens_details": {"image_tokens": 0, "text_tokens": 0},
    "output_tokens": 0,
    "total_tokens": 0,
}


# OpenAI's image stream ends after the last image, without [DONE].
IMAGE_SSE = named_sse(SSE.error)


def completed_events(drawn: Drawn) -> list[dict[str, Any]]:
    """One completed event per image, in order."""
    drawing = drawn.drawing
    created = int(time.time())
    return [
        {
            "type": COMPLETED,
            "b64_json": base64.b64encode(png).decode("ascii"),
            "created_at": created,
            "size": f"{drawing.width}x{drawing.height}",
            "quality": "auto",
            "background": "opaque",
            "output_format": "png",
            "usage": _NO_TOKENS,
            "index": index,
            "seed": seed,
        }
        for index, (png, seed) in enumerate(zip(drawn.pngs, drawing.seeds, strict=True))
    ]


async def stream_events(
    steps: AsyncGenerator[Step | Drawn, None],
) -> AsyncGenerator[dict[str, Any], None]:
    """owl.server.images.draw_steps's steps and images as the stream's events; closing it
    closes `steps`, which stops the drawing."""
    try:
        async for item in steps:
            if isinstance(item, Step):
                yield {"type": PROGRESS, "step": item.step, "steps": item.steps}
            else:
                for event in completed_events(item):
                    yield event
    finally:
        await steps.aclose()
