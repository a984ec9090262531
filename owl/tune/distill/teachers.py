"""Teachers: a store model run in-process through owl's engine, or an OpenAI-compatible server."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from owl.config import Settings
from owl.errors import TeacherError
from owl.pull import resolve
from owl.store import Manifest, RefKind, Source, Store
from owl.store.manifest import Parent
from owl.tune.distill.filter import Answer
from owl.tune.distill.prompts import Message

_MODEL_FILE = re.compile(r"\.gguf($|[?#])", re.IGNORECASE)


def is_teacher_url(teacher: str) -> bool:
    """An http(s) URL that is not a model file: an OpenAI-compatible server's base URL."""
    return teacher.lower().startswith(("http://", "https://")) and not _MODEL_FILE.search(teacher)


class LocalTeacher:
    """A store model, loaded through owl's engine; its generations are batched."""

    def __init__(
        self, manifest: Manifest, *, store: Store, settings: Settings, parallel: int = 4
    ) -> None:
        from owl import engine

        self.manifest = manifest
        self.model = engine.load(
            manifest, store=store, settings=settings, by="owl distill", slots=parallel
        )

    @property
    def parent(self) -> Parent:
        return Parent(
            name=self.manifest.display_name,
            digest=self.manifest.weights.digest,
            relation="teacher",
            license=self.manifest.license,
            source=self.manifest.source,
        )

    def answer_all(
        self, asks: Sequence[tuple[list[Message], int]], *, temperature: float, max_tokens: int
    ) -> Iterable[Answer]:
        from owl.engine.sampling import SamplingParams

        # All submitted first: the scheduler batches them; each stream buffers its answer.
        streams = [
            self.model.chat(
                messages,
                SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed),
            )
            for messages, seed in asks
        ]
        for stream in streams:
            with stream:
                parts, reason = [], None
                for delta in stream:
                    parts.append(delta.text)
                    reason = delta.finish_reason or reason
                yield Answer("".join(parts), reason)

    def close(self) -> None:
        self.model.close()


class RemoteTeacher:
    """A model behind an OpenAI-compatible API (`openai` client), asked `parallel` at a time."""

    def __init__(
        self, base_url: str, *, model: str | None, api_key: str | None, parallel: int = 4
    ) -> None:
        try:
            import openai
        except ImportError as err:
            raise TeacherError(
                "a teacher at a URL needs the openai client: `pip install 'owl[tune]'`"
            ) from err
        self._openai = openai
        self.base_url = base_url.rstrip("/")
        self.client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "none")
        self.parallel = parallel
        self.model_id = model or self._only_model()
        self.license: str | None = None

    def _only_model(self) -> str:
        try:
            ids = [entry.id for entry in self.client.models.list()]
        except self._openai.OpenAIError as err:
            raise TeacherError(f"cannot list the models at {self.base_url}: {err}") from err
        if len(ids) != 1:
            raise TeacherError(
                f"{self.base_url} serves {len(ids)} models; name one with --teacher-model "
                f"({', '.join(ids[:10]) or 'none listed'})"
            )
        return ids[0]

    @property
    def parent(self) -> Parent:
        # Its weights are out of sight: the digest stands for "this model id at this URL".
        identity = f"{self.base_url}#{self.model_id}".encode()
        return Parent(
            name=self.model_id,
            digest="sha256:" + hashlib.sha256(identity).hexdigest(),
            relation="teacher",
            license=self.license,
            source=Source(kind=RefKind.URL, uri=self.base_url),
        )

    def _ask(self, messages: list[Message], seed: int, temperature: float, limit: int) -> Answer:
        try:
            reply = self.client.chat.completions.create(
                model=self.model_id,
                messages=messages,  # type: ignore[arg-type]
                temperature=temperature,
                max_tokens=limit,
                seed=seed,
            )
        except self._openai.OpenAIError as err:
            raise TeacherError(
                f"the teacher {self.model_id} at {self.base_url} failed: {err}; check the URL, "
                "--teacher-model and OWL_TEACHER_API_KEY"
            ) from err
        if not reply.choices:
            return Answer("", None)
        choice = reply.choices[0]
        return Answer(choice.message.content or "", choice.finish_reason)

    def answer_all(
        self, asks: Sequence[tuple[list[Message], int]], *, temperature: float, max_tokens: int
    ) -> Iterable[Answer]:
        with ThreadPoolExecutor(max_workers=self.parallel) as pool:
            futures = [
                pool.submit(self._ask, messages, seed, temperature, max_tokens)
                for messages, seed in asks
            ]
            for future in futures:
                yield future.result()

    def close(self) -> None:
        self.client.close()


def open_teacher(
    teacher: str,
    *,
    model: str | None,
    api_key: str | None,
    license_id: str | None,
    parallel: int,
    store: Store,
    settings: Settings,
) -> LocalTeacher | RemoteTeacher:
    """The teacher named by `teacher`: a URL's server, or a store model (pulled if missing).

    `license_id` states the license owl cannot see (a server's) or overrides the recorded one.
    """
    if is_teacher_url(teacher):
        remote = RemoteTeacher(teacher, model=model, api_key=api_key, parallel=parallel)
        remote.license = license_id
        return remote
    manifest = resolve(teacher, store=store, settings=settings, pull_missing=True)
    if license_id:
        manifest = manifest.model_copy(update={"license": license_id})
    return LocalTeacher(manifest, store=store, settings=settings, parallel=parallel)
