"""distill(): ask a teacher the prompts, keep the good answers, tune the student on them.

What is kept becomes OWL_HOME/tune/<name>/<tag>/distill.jsonl (chat format), with
distill-report.json beside it (kept, dropped by reason). The student's lineage gets a parent
of relation "teacher" with the teacher's license, and `info["distill"]` records the prompts
file's digest and the teacher's terms on training with its outputs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from owl.config import Settings
from owl.errors import NameClash, TeacherError, TrainingDataError
from owl.pull import resolve
from owl.store import Manifest, Store, parse_name
from owl.store.blobs import sha256_file
from owl.store.manifest import Parent
from owl.tune.distill.filter import FilterReport, filter_answers, load_schema
from owl.tune.distill.prompts import read_prompts
from owl.tune.distill.teacher_license import teacher_notices, teacher_terms
from owl.tune.distill.teachers import open_teacher
from owl.tune.options import TuneOptions
from owl.tune.pipeline import run_dir, tune

Status = Callable[[str], None]
Progress = Callable[[int, int], None]  # (answers received, answers asked for)


@dataclass
class DistillResult:
    """The dataset, its report, the license notices, and the student (None: not tuned)."""

    name: str
    dataset: Path
    report: FilterReport
    notices: list[str]
    teacher: Parent
    student: Manifest | None = None


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

    source = open_teacher(
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
