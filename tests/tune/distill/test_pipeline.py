"""owl.tune.distill.pipeline: prompts → answers → filtered dataset → tuned student, lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.errors import TeacherError
from owl.pull import check_model, pull
from owl.store.blobs import sha256_file
from owl.store.manifest import Parent
from owl.tune.distill.filter import Answer, filter_answers
from owl.tune.distill.pipeline import distill, record_lineage
from owl.tune.distill.teacher_license import teacher_notices
from tests.tune.distill.conftest import prompts_file, user


def test_lineage_names_the_teacher_and_its_terms_reach_the_student(
    store, settings, tmp_path: Path
) -> None:
    base = pull("smollm2", store=store, settings=settings)
    student = base.model_copy(
        update={
            "name": "student",
            "parents": [
                Parent(
                    name="smollm2",
                    digest=base.weights.digest,
                    relation="fine-tuned",
                    license=base.license,
                )
            ],
        }
    )
    store.save(student)
    teacher = Parent(
        name="llama3.1-8b", digest="sha256:" + "1" * 64, relation="teacher", license="llama3.1"
    )
    prompts = prompts_file(tmp_path, 2)
    _, report = filter_answers([(user("x"), Answer("y"))])
    notices = teacher_notices("llama3.1", "llama3.1-8b")
    updated = record_lineage(
        student, teacher=teacher, prompts=prompts, report=report, notices=notices, store=store
    )
    stored = store.get(updated.model_name)
    assert [(p.name, p.relation, p.license) for p in stored.parents] == [
        ("smollm2", "distilled", "apache-2.0"),
        ("llama3.1-8b", "teacher", "llama3.1"),
    ]
    record = stored.info["distill"]
    assert record["prompts_digest"] == sha256_file(prompts)
    assert record["teacher_terms"]["rule"] == "derivative"
    assert record["notices"] == notices and record["report"]["kept"] == 1
    verdict = check_model(stored, store=store, use="commercial")
    assert any("Llama" in obligation for obligation in verdict.obligations)
    assert any("trained on outputs of llama3.1-8b" in reason for reason in verdict.reasons)


@pytest.mark.slow
def test_truncated_answers_leave_nothing_to_train_on(store, settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"threads": 1, "ctx": 1024})
    with pytest.raises(TeacherError, match="2 truncated"):
        distill(
            "smollm2",
            student="smollm2",
            prompts=prompts_file(tmp_path, 2),
            max_tokens=2,
            tune_student=False,
            store=store,
            settings=settings,
        )
    report = json.loads(
        (
            settings.home / "tune" / "smollm2-distilled" / "latest" / "distill-report.json"
        ).read_text()
    )
    assert report["dropped"]["truncated"] == 2 and report["kept"] == 0


def test_a_taken_student_name_is_refused_before_the_teacher_runs(
    store, settings, tmp_path: Path
) -> None:
    from owl.errors import NameClash

    pull("smollm2", store=store, settings=settings)
    with pytest.raises(NameClash, match="--name OTHER"):
        distill(
            "http://127.0.0.1:9/v1",
            teacher_model="m",
            student="smollm2",
            name="smollm2",
            prompts=prompts_file(tmp_path, 1),
            store=store,
            settings=settings,
        )


@pytest.mark.slow
def test_distil_then_tune_two_steps(tune_base, tmp_path: Path) -> None:
    from owl.tune import TuneOptions

    store, settings = tune_base.store, tune_base.settings.model_copy(update={"ctx": 1024})
    prompts = prompts_file(tmp_path, 4)
    result = distill(
        "smollm2",
        student="smollm2",
        prompts=prompts,
        max_tokens=96,
        name="student",
        options=TuneOptions(max_steps=2, batch_size=2, rank=4),
        store=store,
        settings=settings,
    )
    student = store.get(result.student.model_name)
    assert [(p.name, p.relation) for p in student.parents] == [
        ("smollm2", "distilled"),
        ("smollm2", "teacher"),
    ]
    assert student.info["distill"]["prompts_digest"] == sha256_file(prompts)
    assert student.info["tune"]["data_digest"] == sha256_file(result.dataset)
    assert student.info["tune"]["steps"] == 2
    # The student runs as an adapter on its base: T2's engine finds the base through the
    # "distilled" parent, not the teacher.
    from owl import engine
    from owl.engine.sampling import SamplingParams

    model = engine.load(student, store=store, settings=settings)
    try:
        answer = "".join(d.text for d in model.chat(user("Hi"), SamplingParams(max_tokens=4)))
    finally:
        model.close()
    assert answer
