"""Images out, as every API asks for them: one task (DrawTask), drawn whole (draw()) or step
by step for a stream (prepare() then draw_steps()), and the folder of drawn images the
server serves back for `response_format=url`.

OpenAI's /v1/images/generations translates onto these (owl/server/openai/images.py). The
drawer comes from the server's one pool, under the same memory budget and keep_alive as
every other loaded model. The request is checked against the server's limits before any
model loads; the drawing runs in a worker thread, one at a time per pipeline, and stops at
its next step when the client disconnects.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import tempfile
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from owl.config import Settings
from owl.engine.drawing import Drawing, DrawLimits, DrawOptions, check_options
from owl.errors import InvalidParameter, OwlError, ServerBusy
from owl.server.disconnect import ClientGone
from owl.server.pool import ModelPool

IMAGES = "images"  # OWL_HOME/images: the drawn PNGs a url response points at
_FILE_NAME = re.compile(r"^[0-9a-f]{64}\.png$")
log = logging.getLogger("owl.server")


@dataclass(frozen=True, kw_only=True)
class DrawTask:
    """What to draw, with the diffusers pipeline `model`."""

    model: str
    options: DrawOptions
    keep_alive: float | None = None


@dataclass(frozen=True)
class Drawn:
    """A drawing and its images as PNG files, in order."""

    drawing: Drawing
    pngs: tuple[bytes, ...]


@dataclass(frozen=True)
class Step:
    """A drawing's progress: `step` of its `steps` denoising steps are done."""

    step: int
    steps: int


async def prepare(request: Request, task: DrawTask) -> Callable[..., Drawn]:
    """The work that draws `task` in a worker thread, `work(progress=…, cancelled=…)`, once
    the request is checked and its drawer loaded and held for this request's task (a
    stream's too: await it in the route, not in the stream). InvalidPrompt/InvalidParameter
    (400) for a request out of the server's limits, before any model loads; ServerBusy (429)
    when OWL_MAX_QUEUE drawings already wait for the model."""
    settings: Settings = request.app.state.settings
    limits = DrawLimits.of(settings)
    check_options(task.options, limits)
    pool: ModelPool = request.app.state.pool
    drawer = await pool.drawer(task.model, keep_alive=task.keep_alive)
    occupancy = drawer.occupancy()
    # This drawing would wait when every slot is drawing; OWL_MAX_QUEUE may already wait.
    if occupancy.running >= occupancy.slots and occupancy.waiting >= settings.max_queue:
        raise ServerBusy(
            f"{settings.max_queue} drawings already wait for '{task.model}'; retry later"
        )

    def work(**callbacks: Callable) -> Drawn:
        drawing = drawer.draw(task.options, limits=limits, **callbacks)
        return Drawn(drawing, tuple(image.png() for image in drawing.images))

    return work


async def draw(request: Request, task: DrawTask) -> Drawn:
    """`task`'s images. InvalidPrompt/InvalidParameter (400) for a request out of the
    server's limits, before any model loads; ServerBusy (429) when OWL_MAX_QUEUE drawings
    already wait for the model; ClientGone when the client leaves first."""
    work = await prepare(request, task)
    stop = threading.Event()
    return await _unless_gone(request, run_in_threadpool(work, cancelled=stop.is_set), stop)


async def draw_steps(
    work: Callable[..., Drawn], *, model: str
) -> AsyncGenerator[Step | Drawn, None]:
    """A Step after each denoising step of prepare()'s `work`, then the Drawn images.
    Closing the generator (the client left a stream) stops the drawing at its next step
    and waits for its thread to end."""
    loop = asyncio.get_running_loop()
    steps: asyncio.Queue[Step] = asyncio.Queue()
    stop = threading.Event()

    def progress(step: int, total: int) -> None:  # on the drawing's thread
        loop.call_soon_threadsafe(steps.put_nowait, Step(step, total))

    drawing = asyncio.ensure_future(
        run_in_threadpool(work, progress=progress, cancelled=stop.is_set)
    )
    next_step: asyncio.Future[Step] | None = None
    try:
        while not drawing.done():
            next_step = asyncio.ensure_future(steps.get())
            await asyncio.wait({next_step, drawing}, return_when=asyncio.FIRST_COMPLETED)
            if next_step.done():
                yield next_step.result()
            else:
                next_step.cancel()
        while not steps.empty():  # the last steps' callbacks ran before the drawing ended
            yield steps.get_nowait()
        yield drawing.result()
    finally:
        if next_step is not None:
            next_step.cancel()
        if not drawing.done():
            stop.set()
            # Work given up, on the operator's machine: worth a line in the server's log.
            log.warning("a drawing with '%s' stopped: its client left", model)
            with suppress(OwlError):  # EngineError: it stopped; nobody reads any answer now
                await drawing  # the thread ends at the drawing's next step


async def _unless_gone(request: Request, work: Awaitable[Drawn], stop: threading.Event) -> Drawn:
    """`await work`, or ClientGone once the client disconnects, after telling the drawing to
    stop (`stop`): a worker thread cannot be cancelled, only asked to end, which the
    drawer does at its next step. (owl.server.disconnect cancels the awaiting task, which
    waits for the thread to end on its own.)"""
    task = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
    if task.done():
        return task.result()
    stop.set()
    with suppress(OwlError):  # EngineError: it stopped; nobody reads any answer now
        await task  # the thread ends at the drawing's next step
    raise ClientGone()


async def _disconnected(request: Request) -> None:
    # The body has been read: the server's next message for this request is the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


class ImageFiles:
    """Drawn PNGs under OWL_HOME/images, named by their sha256, for url responses: at most
    `keep` of them, the least recently drawn removed first. Each file is written to a temp
    file and renamed into place, so a reader never sees half of one."""

    def __init__(self, folder: Path, *, keep: int) -> None:
        self.folder = folder
        self.keep = keep
        self._lock = threading.Lock()

    def save(self, png: bytes) -> str:
        """Keep `png`; its file name ("<sha256>.png"). InvalidParameter when url responses
        are off (OWL_IMAGE_FILES=0)."""
        if self.keep <= 0:
            raise InvalidParameter(
                param="response_format",
                reason="this server keeps no image files (OWL_IMAGE_FILES=0); ask for b64_json",
            )
        name = hashlib.sha256(png).hexdigest() + ".png"
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            target = self.folder / name
            if target.is_file():
                os.utime(target)  # drawn again: the newest now
            else:
                fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
                try:
                    with os.fdopen(fd, "wb") as out:
                        out.write(png)
                    os.replace(temp, target)
                except BaseException:
                    Path(temp).unlink(missing_ok=True)
                    raise
            self._prune()
        return name

    def _prune(self) -> None:
        files = sorted(self.folder.glob("*.png"), key=lambda path: path.stat().st_mtime_ns)
        for old in files[: max(len(files) - self.keep, 0)]:
            old.unlink(missing_ok=True)

    def read(self, name: str) -> bytes | None:
        """The kept file `name`, or None: a name that is no sha256 file name is never a path,
        and a file removed meanwhile is gone."""
        if not _FILE_NAME.match(name):
            return None
        try:
            return (self.folder / name).read_bytes()
        except OSError:
            return None


def image_files(settings: Settings) -> ImageFiles:
    return ImageFiles(settings.home / IMAGES, keep=settings.image_files)
