"""owl.tune.distill.teachers: a stored teacher in-process, the same one behind `owl serve`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.errors import TeacherError
from owl.tune.distill.pipeline import distill
from owl.tune.distill.teachers import is_teacher_url
from tests.support.owl_server import running_server
from tests.tune.distill.conftest import prompts_file


def test_teacher_urls_and_model_urls() -> None:
    assert is_teacher_url("http://127.0.0.1:8000/v1")
    assert is_teacher_url("https://api.example.com/v1/")
    assert not is_teacher_url("https://host/models/model.Q4_K_M.gguf")
    assert not is_teacher_url("https://host/m.gguf#sha256=" + "0" * 64)
    assert not is_teacher_url("smollm2")


@pytest.mark.slow
def test_a_stored_teacher_answers_in_process(store, settings, tmp_path: Path) -> None:
    settings = settings.model_copy(update={"threads": 1, "ctx": 1024})
    prompts = prompts_file(tmp_path, 3)
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
def test_a_teacher_behind_owl_serve_answers_like_the_same_model_in_process(
    store, settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"threads": 1, "ctx": 512})
    prompts = prompts_file(tmp_path, 2)
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


def test_an_unreachable_teacher_url_is_a_clear_error(store, settings, tmp_path: Path) -> None:
    with pytest.raises(TeacherError, match="127.0.0.1:9"):
        distill(
            "http://127.0.0.1:9/v1",
            teacher_model="m",
            student="smollm2",
            prompts=prompts_file(tmp_path, 1),
            tune_student=False,
            store=store,
            settings=settings,
        )
