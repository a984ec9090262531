"""owl distill: prompts → teacher answers → filtered dataset → tuned student with lineage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.errors import TeacherError, TrainingDataError
from owl.licenses.check import check_model
from owl.store import pull
from owl.store.blobs import sha256_file
from owl.store.manifest import Parent
from owl.tune.distill import (
    Answer,
    distill,
    filter_answers,
    is_teacher_url,
    load_schema,
    read_prompts,
    record_lineage,
    teacher_notices,
)
from tests.support.cli import owl
from tests.support.owl_server import running_server

ROOT = Path(__file__).resolve().parents[2]
EXTRACTION = ROOT / "data" / "extraction"
SCHEMA = {
    "type": "object",
    "required": ["name", "amount"],
    "properties": {"name": {"type": "string"}, "amount": {"type": "number"}},
}


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _prompts(tmp_path: Path, count: int) -> Path:
    lines = (EXTRACTION / "prompts.txt").read_text().splitlines()[:count]
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(lines) + "\n\n")
    return path


# The filter, on fixed answers


def test_filter_drops_each_reason_once_and_keeps_the_rest() -> None:
    a, b = _user("a"), _user("b")
    answered = [
        (a, Answer('{"name": "Ann", "amount": 3}', "stop")),  # kept
        (a, Answer('  {"name": "Ann", "amount": 3}\n', "stop")),  # duplicate once stripped
        (b, Answer('{"name": "Ann", "amount": 3}', "stop")),  # kept: the same text, other prompt
        (a, Answer("   \n", "stop")),  # empty
        (a, Answer('{"name": "Ann", "amo', "length")),  # truncated
        (b, Answer("Sure! Here it is.", "stop")),  # invalid_json
        (b, Answer('{"name": "Ann", "amount": "3"}', "stop")),  # schema
        (b, Answer('{"name": "Bo", "amount": 4.5}', None)),  # kept: no finish reason given
    ]
    records, report = filter_answers(answered, schema=SCHEMA)
    assert report.to_json() == {
        "prompts": 2,
        "answers": 8,
        "kept": 3,
        "dropped": {"empty": 1, "truncated": 1, "invalid_json": 1, "schema": 1, "duplicate": 1},
    }
    assert records == [
        {"messages": [*a, {"role": "assistant", "content": '{"name": "Ann", "amount": 3}'}]},
        {"messages": [*b, {"role": "assistant", "content": '{"name": "Ann", "amount": 3}'}]},
        {"messages": [*b, {"role": "assistant", "content": '{"name": "Bo", "amount": 4.5}'}]},
    ]


def test_without_a_schema_prose_is_kept_unless_json_is_asked_for() -> None:
    answered = [(_user("a"), Answer("Paris.", "stop")), (_user("b"), Answer("[1, 2]", "stop"))]
    records, report = filter_answers(answered)
    assert (report.kept, sum(report.dropped.values())) == (2, 0)
    records, report = filter_answers(answered, json_only=True)
    assert (report.kept, report.dropped["invalid_json"]) == (1, 1)
    assert records[0]["messages"][-1]["content"] == "[1, 2]"


def test_a_schema_that_is_not_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    assert load_schema(path) == SCHEMA
    path.write_text('{"type": "no-such-type"}')
    with pytest.raises(TrainingDataError, match="not a valid JSON Schema"):
        load_schema(path)
    path.write_text("[1]")
    with pytest.raises(TrainingDataError, match="not a JSON Schema"):
        load_schema(path)


# Prompts files


def test_read_prompts_text_and_jsonl(tmp_path: Path) -> None:
    text = tmp_path / "p.txt"
    text.write_text("first\n\n  second  \n")
    assert read_prompts(text) == [_user("first"), _user("second")]
    chat = tmp_path / "p.jsonl"
    system = {"role": "system", "content": "Be brief."}
    rows = [
        {"messages": [system, *_user("q"), {"role": "assistant", "content": "old answer"}]},
        {"prompt": "plain"},
    ]
    chat.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    assert read_prompts(chat) == [[system, *_user("q")], _user("plain")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "line 2 is not JSON"),
        ('{"messages": [{"role": "assistant", "content": "x"}]}', "line 2 has no user turn"),
        ('{"messages": [{"role": "tool", "content": "x"}]}', "line 2 needs"),
        ('{"prompt": 3}', "line 2 needs"),
    ],
)
def test_a_bad_prompts_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "fine"}\n' + line + "\n")
    with pytest.raises(TrainingDataError, match=message):
        read_prompts(path)


def test_an_empty_prompts_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("\n \n")
    with pytest.raises(TrainingDataError, match="no prompts"):
        read_prompts(path)


def test_teacher_urls_and_model_urls() -> None:
    assert is_teacher_url("http://127.0.0.1:8000/v1")
    assert is_teacher_url("https://api.example.com/v1/")
    assert not is_teacher_url("https://host/models/model.Q4_K_M.gguf")
    assert not is_teacher_url("https://host/m.gguf#sha256=" + "0" * 64)
    assert not is_teacher_url("smollm2")


# License terms on training with a teacher's outputs


def test_teacher_notices_follow_the_license_terms() -> None:
    assert teacher_notices("apache-2.0", "smollm2") == []
    forbidden = teacher_notices("llama3", "llama3-8b")
    assert "except Meta Llama 3" in forbidden[0] and "§1.b.v" in forbidden[0]
    carried = teacher_notices("llama3.1", "llama3.1-8b")
    assert any('beginning with "Llama"' in notice for notice in carried)
    assert all(
        notice.startswith(("teacher llama3.1-8b", "carried to the student")) for notice in carried
    )
    gemma = teacher_notices("gemma", "gemma-3-1b")
    assert "Model Derivative" in gemma[0] and len(gemma) > 1  # its obligations follow
    assert "not recorded" in teacher_notices(None, "remote")[0]
    assert "no terms" in teacher_notices("my-own-license", "remote")[0]


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
    prompts = _prompts(tmp_path, 2)
    _, report = filter_answers([(_user("x"), Answer("y"))])
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


# Real teachers


@pytest.mark.slow
def test_a_stored_teacher_answers_in_process(store, settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"threads": 1, "ctx": 1024})
    prompts = _prompts(tmp_path, 3)
    result = distill(
        "smollm2",
        student="smollm2",
        prompts=prompts,
        samples=2,
        max_tokens=96,
        tune_student=False,
        store=store,
        settings=settings,
    )
    report = result.report.to_json()
    # Greedy by default for one sample; with two, 0.7 — so any repeat is a duplicate.
    assert report["prompts"] == 3 and report["answers"] == 6
    assert report["kept"] + sum(report["dropped"].values()) == 6
    assert (
        result.dataset == settings.home / "tune" / "smollm2-distilled" / "latest" / "distill.jsonl"
    )
    rows = [json.loads(line) for line in result.dataset.read_text().splitlines()]
    assert len(rows) == report["kept"] >= 3 - report["dropped"]["empty"]
    asked = {line for line in prompts.read_text().splitlines() if line}
    for row in rows:
        user, assistant = row["messages"]
        assert user["role"] == "user" and user["content"] in asked
        assert (
            assistant["role"] == "assistant"
            and assistant["content"] == assistant["content"].strip()
        )
        assert assistant["content"]
    saved = json.loads((result.dataset.parent / "distill-report.json").read_text())
    assert saved == report
    assert result.teacher.relation == "teacher" and result.teacher.license == "apache-2.0"
    assert result.notices == []  # Apache-2.0 claims nothing of outputs
    assert result.student is None


@pytest.mark.slow
def test_truncated_answers_leave_nothing_to_train_on(store, settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"threads": 1, "ctx": 1024})
    with pytest.raises(TeacherError, match="2 truncated"):
        distill(
            "smollm2",
            student="smollm2",
            prompts=_prompts(tmp_path, 2),
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


@pytest.mark.slow
def test_a_teacher_behind_owl_serve_answers_like_the_same_model_in_process(
    store, settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"threads": 1, "ctx": 512})
    prompts = _prompts(tmp_path, 2)
    local = distill(
        "smollm2",
        student="smollm2",
        prompts=prompts,
        max_tokens=64,
        name="local",
        parallel=1,
        tune_student=False,
        store=store,
        settings=settings,
    )
    (tmp_path / "server").mkdir()
    with running_server(tmp_path / "server") as server:
        remote = distill(
            f"{server.base}/v1",
            teacher_model="smollm2",
            teacher_license="llama3.1",
            student="smollm2",
            prompts=prompts,
            max_tokens=64,
            name="remote",
            parallel=1,
            tune_student=False,
            store=store,
            settings=settings,
        )
        with pytest.raises(TeacherError, match="no-such"):
            distill(
                f"{server.base}/v1",
                teacher_model="no-such",
                student="smollm2",
                prompts=prompts,
                tune_student=False,
                store=store,
                settings=settings,
            )
    assert remote.dataset.read_text() == local.dataset.read_text()  # greedy: the same answers
    assert remote.teacher.source is not None and remote.teacher.source.uri == f"{server.base}/v1"
    assert (remote.teacher.name, remote.teacher.license) == ("smollm2", "llama3.1")
    assert any('"Llama"' in notice for notice in remote.notices)


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
            prompts=_prompts(tmp_path, 1),
            store=store,
            settings=settings,
        )


def test_an_unreachable_teacher_url_is_a_clear_error(store, settings, tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="127.0.0.1:9"):
        distill(
            "http://127.0.0.1:9/v1",
            teacher_model="m",
            student="smollm2",
            prompts=_prompts(tmp_path, 1),
            tune_student=False,
            store=store,
            settings=settings,
        )


@pytest.mark.slow
def test_the_cli_writes_the_dataset_and_reports(tmp_path: Path) -> None:
    home = tmp_path / "home"
    done = owl(
        home,
        "distill",
        "--teacher",
        "smollm2",
        "--student",
        "smollm2",
        "--prompts",
        str(_prompts(tmp_path, 2)),
        "--no-tune",
        "--max-tokens",
        "64",
        "--threads",
        "1",
        "--ctx",
        "1024",
        "--name",
        "cli-run",
    )
    assert done.returncode == 0, done.stderr
    assert "of 2 answers to 2 prompts" in done.stdout
    assert (home / "tune" / "cli-run" / "latest" / "distill.jsonl").is_file()
    missing = owl(
        home,
        "distill",
        "--teacher",
        "smollm2",
        "--student",
        "smollm2",
        "--prompts",
        str(tmp_path / "none.txt"),
        "--no-tune",
    )
    assert missing.returncode == 1 and "cannot read prompts" in missing.stderr


@pytest.mark.slow
def test_distil_then_tune_two_steps(tune_base, tmp_path: Path) -> None:
    from owl.tune import TuneOptions

    store, settings = tune_base.store, tune_base.settings.model_copy(update={"ctx": 1024})
    prompts = _prompts(tmp_path, 4)
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
        answer = "".join(d.text for d in model.chat(_user("Hi"), SamplingParams(max_tokens=4)))
    finally:
        model.close()
    assert answer
