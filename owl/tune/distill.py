"""distill: a teacher answers prompts → a filtered chat dataset → `owl tune` on a student.

The teacher is a model in owl's store, run in-process through owl's engine, or any
OpenAI-compatible server (a base URL and a model id there). Each prompt gets `samples`
answers; an answer is dropped when it is empty, truncated (finish_reason "length"), not JSON
or not valid against the schema when one is given, or an exact duplicate of one kept for
the same prompt. What is kept becomes OWL_HOME/tune/<name>/<tag>/distill.jsonl (chat format),
with distill-report.json beside it (kept, dropped by reason).

Lineage: the student gets a parent of relation "teacher" with the teacher's license, and
`info["distill"]` records the prompts file's digest and the teacher's terms on training with
its outputs (owl/licenses terms.toml `output_training`: free, derivative, forbidden); some
licenses (Llama 3, Gemma) reach models trained on their outputs, and those are surfaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from owl.config import Settings
from owl.errors import NameClash, TeacherError, TrainingDataError
from owl.licenses.terms import terms
from owl.store import Manifest, RefKind, Source, Store, parse_name, resolve
from owl.store.blobs import sha256_file
from owl.store.manifest import Parent
from owl.tune.stage import run_dir

log = logging.getLogger(__name__)

Message = dict[str, str]
Status = Callable[[str], None]
Progress = Callable[[int, int], None]  # (answers received, answers asked for)

DROP_REASONS = ("empty", "truncated", "invalid_json", "schema", "duplicate")
MAX_PROMPTS = 100_000
MAX_PROMPT_CHARS = 100_000
_MODEL_FILE = re.compile(r"\.gguf($|[?#])", re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    """One teacher answer, and why it ended ("stop", "length", …)."""

    text: str
    finish_reason: str | None = "stop"


@dataclass
class FilterReport:
    """How many answers came in, were kept, and were dropped for each reason."""

    prompts: int = 0
    answers: int = 0
    kept: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    def to_json(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "answers": self.answers,
            "kept": self.kept,
            "dropped": {reason: self.dropped.get(reason, 0) for reason in DROP_REASONS},
        }


@dataclass
class DistillResult:
    """The dataset, its report, the license notices, and the student (None: not tuned)."""

    name: str
    dataset: Path
    report: FilterReport
    notices: list[str]
    teacher: Parent
    student: Manifest | None = None


# The prompts


def read_prompts(path: Path) -> list[list[Message]]:
    """The conversations to ask the teacher: one per line of a .txt, or a chat JSONL.

    A .jsonl line is `{"messages": [...]}` (assistant turns after the last user turn are
    dropped: the teacher writes its own) or `{"prompt": "…"}`; any other file is text, one
    user prompt per non-blank line. TrainingDataError names a bad line.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise TrainingDataError(f"cannot read prompts from {path}: {err}") from err
    jsonl = path.suffix.lower() == ".jsonl"
    prompts: list[list[Message]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        if len(line) > MAX_PROMPT_CHARS:
            raise TrainingDataError(f"{where} is longer than {MAX_PROMPT_CHARS} characters")
        prompts.append(_prompt_line(line, where) if jsonl else [_user(line.strip())])
        if len(prompts) > MAX_PROMPTS:
            raise TrainingDataError(f"{path} has more than {MAX_PROMPTS} prompts; split it")
    if not prompts:
        raise TrainingDataError(f"{path} has no prompts; give one per line (or a chat JSONL)")
    return prompts


def _user(text: str) -> Message:
    return {"role": "user", "content": text}


def _prompt_line(line: str, where: str) -> list[Message]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as err:
        raise TrainingDataError(f"{where} is not JSON ({err.msg})") from err
    if isinstance(row, dict) and isinstance(row.get("prompt"), str) and row["prompt"].strip():
        return [_user(row["prompt"])]
    messages = row.get("messages") if isinstance(row, dict) else None
    ok = isinstance(messages, list) and all(
        isinstance(m, dict)
        and m.get("role") in ("system", "user", "assistant")
        and isinstance(m.get("content"), str)
        for m in messages
    )
    if not ok:
        raise TrainingDataError(
            f'{where} needs "prompt": a string, or "messages": a list of {{"role", "content"}} '
            "with roles system, user, assistant"
        )
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    if last_user < 0:
        raise TrainingDataError(f"{where} has no user turn for the teacher to answer")
    return [{"role": m["role"], "content": m["content"]} for m in messages[: last_user + 1]]


# Filtering


def load_schema(path: Path) -> dict[str, Any]:
    """A JSON Schema from a file, checked to be one (TrainingDataError otherwise)."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TrainingDataError(f"cannot read the JSON schema {path}: {err}") from err
    if not isinstance(schema, dict | bool):
        raise TrainingDataError(f"{path} is not a JSON Schema (an object or a boolean)")
    try:
        import jsonschema
    except ImportError as err:
        raise TrainingDataError(
            "--schema needs the jsonschema package: `pip install 'owl[tune]'`"
        ) from err

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as err:
        raise TrainingDataError(f"{path} is not a valid JSON Schema: {err.message}") from err
    return schema


def _schema_check(schema: dict[str, Any] | None) -> Callable[[Any], bool] | None:
    if schema is None:
        return None
    import jsonschema

    validator = jsonschema.validators.validator_for(schema)(schema)
    return validator.is_valid


def filter_answers(
    answered: Iterable[tuple[list[Message], Answer]],
    *,
    schema: dict[str, Any] | None = None,
    json_only: bool = False,
) -> tuple[list[dict[str, Any]], FilterReport]:
    """Chat records of the answers worth training on, and what was dropped and why.

    Checked in this order: empty (only whitespace), truncated (finish_reason "length"),
    invalid_json (with a schema or `json_only`: the stripped answer does not parse), schema
    (it parses but does not validate), duplicate (the same answer to the same prompt).
    """
    valid = _schema_check(schema)
    report = FilterReport()
    seen: set[tuple[str, str]] = set()
    prompts: set[str] = set()
    records: list[dict[str, Any]] = []
    for messages, answer in answered:
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        prompts.add(key)
        report.answers += 1
        text = answer.text.strip()
        reason = _drop_reason(text, answer, valid, json_only or schema is not None)
        if reason is None and (key, text) in seen:
            reason = "duplicate"
        if reason is not None:
            report.dropped[reason] += 1
            continue
        seen.add((key, text))
        records.append({"messages": [*messages, {"role": "assistant", "content": text}]})
    report.prompts = len(prompts)
    report.kept = len(records)
    return records, report


def _drop_reason(
    text: str, answer: Answer, valid: Callable[[Any], bool] | None, json_only: bool
) -> str | None:
    if not text:
        return "empty"
    if answer.finish_reason == "length":
        return "truncated"
    if not json_only:
        return None
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return "invalid_json"
    return "schema" if valid is not None and not valid(value) else None


# Teachers


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


# License terms on training with a teacher's outputs


def teacher_notices(license_id: str | None, teacher: str) -> list[str]:
    """What the teacher's license says of a model trained on its outputs, as warnings."""
    known = terms(license_id)
    if known is None:
        said = (
            f"its license ({license_id}) is one owl has no terms for"
            if license_id
            else ("its license is not recorded")
        )
        return [
            f"teacher {teacher}: {said}; read its terms on training other models with its "
            "outputs before you use or share the student"
        ]
    rule = known.output_training
    if rule is None:
        return [
            f"teacher {teacher} ({known.id}): owl has no record of what its license says of "
            "training on its outputs; read it"
        ]
    clause = f" ({known.id} {rule.clause})" if rule.clause else f" ({known.id})"
    if rule.rule == "free":
        return []
    notices = [f"teacher {teacher}: {rule.text}{clause}"]
    if rule.rule == "derivative":
        notices += [f"carried to the student: {ob.render(known.id)}" for ob in known.obligations]
    else:
        notices.append(
            f"the student may be used only within {known.name}'s own model family; "
            "`owl license check` on it says denied otherwise"
        )
    return notices


def teacher_terms(license_id: str | None) -> dict[str, Any]:
    """The record of the teacher's output-training terms kept in the student's manifest."""
    known = terms(license_id)
    rule = known.output_training if known is not None else None
    return {
        "license": known.id if known is not None else license_id,
        "rule": rule.rule if rule is not None else "unknown",
        "clause": rule.clause if rule is not None else None,
        "text": rule.text if rule is not None else None,
    }


# The whole run


def _teacher(
    teacher: str,
    *,
    model: str | None,
    api_key: str | None,
    license_id: str | None,
    parallel: int,
    store: Store,
    settings: Settings,
) -> LocalTeacher | RemoteTeacher:
    if is_teacher_url(teacher):
        remote = RemoteTeacher(teacher, model=model, api_key=api_key, parallel=parallel)
        remote.license = license_id
        return remote
    manifest = resolve(teacher, store=store, settings=settings, pull_missing=True)
    if license_id:
        manifest = manifest.model_copy(update={"license": license_id})
    return LocalTeacher(manifest, store=store, settings=settings, parallel=parallel)


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def write_dataset(folder: Path, records: list[dict[str, Any]], report: FilterReport) -> Path:
    """distill.jsonl and distill-report.json in `folder`; the dataset's path."""
    folder.mkdir(parents=True, exist_ok=True)
    dataset = folder / "distill.jsonl"
    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in records)
    _write_atomic(dataset, lines)
    _write_atomic(folder / "distill-report.json", json.dumps(report.to_json(), indent=2) + "\n")
    return dataset


def distill(
    teacher: str,
    *,
    student: str,
    prompts: Path,
    store: Store,
    settings: Settings,
    samples: int = 1,
    temperature: float | None = None,
    max_tokens: int = 512,
    schema: Path | None = None,
    json_only: bool = False,
    name: str | None = None,
    options: Any = None,
    teacher_model: str | None = None,
    teacher_api_key: str | None = None,
    teacher_license: str | None = None,
    parallel: int = 4,
    tune_student: bool = True,
    status: Status | None = None,
    progress: Progress | None = None,
) -> DistillResult:
    """Ask `teacher` each prompt `samples` times, keep the good answers, tune `student` on them.

    `teacher`: a store model (name, file, reference) or an OpenAI-compatible base URL
    (`teacher_model` names the model there; `teacher_license` states its license, which
    owl cannot see). `temperature`: 0 (greedy) for one sample, else 0.7 unless given.
    `options`: owl.tune's TuneOptions. With `tune_student=False` only the dataset is made.
    """
    say = status or (lambda message: None)
    if samples < 1:
        raise TrainingDataError(f"--samples must be 1 or more, not {samples}")
    asked = read_prompts(prompts)
    schema_value = load_schema(schema) if schema is not None else None
    base = resolve(student, store=store, settings=settings, pull_missing=True)
    target = parse_name(name) if name else parse_name(f"{base.name}-distilled")
    if tune_student and store.find(target) is not None:  # before the teacher's minutes
        raise NameClash(
            f"a model named '{target}' already exists; distil with --name OTHER, "
            f"or `owl rm {target}` first"
        )
    folder = run_dir(settings, target)  # beside owl tune's checkpoints of the same run
    heat = temperature if temperature is not None else (0.0 if samples == 1 else 0.7)

    source = _teacher(
        teacher,
        model=teacher_model,
        api_key=teacher_api_key,
        license_id=teacher_license,
        parallel=parallel,
        store=store,
        settings=settings,
    )
    parent = source.parent
    notices = teacher_notices(parent.license, parent.name)
    for notice in notices:
        say(f"warning: {notice}")
    asks = [(messages, seed) for messages in asked for seed in range(samples)]
    say(f"asking {parent.name} {len(asks)} times ({len(asked)} prompts × {samples})")
    try:
        answers = []
        for answer in source.answer_all(asks, temperature=heat, max_tokens=max_tokens):
            answers.append(answer)
            if progress is not None:
                progress(len(answers), len(asks))
    finally:
        source.close()
    records, report = filter_answers(
        zip((messages for messages, _ in asks), answers, strict=True),
        schema=schema_value,
        json_only=json_only,
    )
    dataset = write_dataset(folder, records, report)
    result = DistillResult(
        name=str(target), dataset=dataset, report=report, notices=notices, teacher=parent
    )
    if not records:
        raise TeacherError(
            f"none of the teacher's {report.answers} answers was kept "
            f"({_dropped_words(report)}); see {folder / 'distill-report.json'}"
        )
    if not tune_student:
        return result
    say(f"tuning {base.display_name} on {report.kept} answers")
    result.student = _tune(
        base,
        dataset,
        target=str(target),
        options=options,
        store=store,
        settings=settings,
        status=status,
    )
    result.student = record_lineage(
        result.student,
        teacher=parent,
        prompts=prompts,
        report=report,
        notices=notices,
        store=store,
    )
    return result


def _dropped_words(report: FilterReport) -> str:
    return ", ".join(f"{count} {reason}" for reason, count in report.dropped.items()) or "none"


def _tune(
    base: Manifest,
    dataset: Path,
    *,
    target: str,
    options: Any,
    store: Store,
    settings: Settings,
    status: Status | None,
) -> Manifest:
    from owl.tune import TuneOptions, tune

    return tune(
        base,
        data=dataset,
        name=target,
        options=options if options is not None else TuneOptions(),
        store=store,
        settings=settings,
        status=status,
    )


def record_lineage(
    student: Manifest,
    *,
    teacher: Parent,
    prompts: Path,
    report: FilterReport,
    notices: list[str],
    store: Store,
) -> Manifest:
    """The student's manifest with the teacher among its parents and the run on record.

    The base it was tuned from becomes relation "distilled" (owl tune wrote "fine-tuned").
    """
    parents = [
        p.model_copy(update={"relation": "distilled"}) if p.relation == "fine-tuned" else p
        for p in student.parents
        if p.relation != "teacher"
    ] + [teacher]
    info = dict(student.info)
    info["distill"] = {
        "teacher": teacher.name,
        "prompts": prompts.name,
        "prompts_digest": sha256_file(prompts),
        "report": report.to_json(),
        "teacher_terms": teacher_terms(teacher.license),
        "notices": notices,
    }
    updated = student.model_copy(update={"parents": parents, "info": info})
    store.save(updated)
    return updated
