"""OpenAI's image route: POST /v1/images/generations, and GET /v1/images/files/NAME.png for
the images a `response_format: "url"` answer points at.

A translation onto owl/server/images.py, nothing more: OpenAI's JSON body in (prompt, model,
n, size, response_format), its ImagesResponse out, so that the `openai` client's
images.generate works unchanged. owl's own fields, which OpenAI's API lacks, come in the
same body (the client's `extra_body`): seed, steps, negative_prompt, guidance_scale; the
seed of each image comes back beside it. `"stream": true` answers with OpenAI's image
events and owl's progress event after each step (image_stream.py). OpenAI's fields that
steer its own models (quality, style, background, moderation, user) are accepted and have
no effect.
"""

from __future__ import annotations

import base64
import time
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import AliasChoices, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from owl.engine.drawing import DrawOptions, drawing_model, parse_size
from owl.errors import InvalidParameter
from owl.server.body_checks import CheckedBody
from owl.server.framing import framed
from owl.server.images import DrawTask, ImageFiles, draw, draw_steps, prepare
from owl.server.openai.image_stream import IMAGE_SSE, stream_events

router = APIRouter(prefix="/v1/images")


class ImageGenerationRequest(CheckedBody):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    prompt: str
    model: str | None = None
    n: int | None = Field(default=1, ge=1)  # the upper bound is the server's (OWL_MAX_DRAW_IMAGES)
    size: str | None = "auto"
    # b64_json is the default of OpenAI's current model (gpt-image-1); url is dall-e's.
    response_format: Literal["b64_json", "url"] | None = "b64_json"
    output_format: Literal["png"] | None = None
    stream: bool | None = None
    # owl's own fields
    seed: int | None = None
    steps: int | None = Field(
        default=None, validation_alias=AliasChoices("steps", "num_inference_steps")
    )
    negative_prompt: str | None = None
    guidance_scale: float | None = None

    def to_task(self, model: str) -> DrawTask:
        size = parse_size(self.size or "auto")
        width, height = size if size is not None else (None, None)
        options = DrawOptions(
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            width=width,
            height=height,
            steps=self.steps,
            guidance=self.guidance_scale,
            seed=self.seed,
            n=self.n or 1,
        )
        return DrawTask(model=model, options=options)


@router.post("/generations", response_model=None)
async def generations(
    body: ImageGenerationRequest, request: Request
) -> dict[str, Any] | StreamingResponse:
    model = (body.model or "").strip()
    if not model:  # the one pipeline in the store, as `owl draw` without --model
        model = await run_in_threadpool(drawing_model, request.app.state.pool.store)
    task = body.to_task(model)
    if body.stream:
        if body.response_format == "url":
            raise InvalidParameter(
                param="response_format", reason="a stream sends b64_json images; leave it out"
            )
        work = await prepare(request, task)  # held by this request, the stream's end included
        return await framed(request, stream_events(draw_steps(work, model=model)), IMAGE_SSE)
    drawn = await draw(request, task)
    files: ImageFiles = request.app.state.image_files
    data = []
    for png, seed in zip(drawn.pngs, drawn.drawing.seeds, strict=True):
        if body.response_format == "url":
            name = await run_in_threadpool(files.save, png)
            item = {"url": str(request.url_for("image_file", name=name))}
        else:
            item = {"b64_json": base64.b64encode(png).decode("ascii")}
        data.append({**item, "revised_prompt": None, "seed": seed})
    drawing = drawn.drawing
    return {
        "created": int(time.time()),
        "data": data,
        "size": f"{drawing.width}x{drawing.height}",
        "output_format": "png",
    }


@router.get("/files/{name}", name="image_file")
async def image_file(name: str, request: Request) -> Response:
    files: ImageFiles = request.app.state.image_files
    png = await run_in_threadpool(files.read, name)
    if png is None:
        raise HTTPException(
            404, f"no image {name[:80]!r} here: drawn images are kept for a while, then removed"
        )
    return Response(png, media_type="image/png")
