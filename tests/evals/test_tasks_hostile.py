"""Task files are untrusted: no code runs, no file outside the folder is read, errors say why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from owl.errors import EvalError
from owl.evals.tasks import load_tasks

HEAD = (
    "task: t\ndataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\n"
    "test_split: test\noutput_type: multiple_choice\ndoc_to_choice: c\ndoc_to_target: g\n"
)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    task = tmp_path / "task"
    task.mkdir()
    (task / "d.jsonl").write_text(json.dumps({"q": "x", "c": ["a", "b"], "g": 0}) + "\n")
    return task


def load(folder: Path, yaml_text: str) -> list:
    (folder / "t.yaml").write_text(yaml_text, encoding="utf-8")
    tasks = load_tasks(str(folder / "t.yaml"))
    return [t.questions() for t in tasks]


def test_function_tags_are_refused_and_nothing_is_imported(folder: Path) -> None:
    marker = folder / "ran.txt"
    (folder / "utils.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\ndef f(d): return d\n"
    )
    with pytest.raises(EvalError, match=r"`!function utils.f` asks to run Python code"):
        load(folder, HEAD + "doc_to_text: !function utils.f\n")
    assert not marker.exists()
    with pytest.raises(EvalError, match="owl runs tasks as data only"):
        load(folder, HEAD + "doc_to_text: q\nprocess_results: something\n")
    with pytest.raises(EvalError, match="not a YAML task file"):
        load(folder, HEAD + "doc_to_text: !!python/object/apply:os.system ['true']\n")


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
        "{{ q.__class__.__base__ }}",
        "{{ self.__init__.__globals__ }}",
    ],
)
def test_templates_cannot_reach_python_internals(folder: Path, template: str) -> None:
    with pytest.raises(EvalError, match="a task template only formats a row's fields"):
        load(folder, HEAD + f'doc_to_text: "{template}"\n')


def test_templates_that_run_away_are_stopped(folder: Path) -> None:
    with pytest.raises(EvalError, match="stopped past its"):
        load(folder, HEAD + "doc_to_text: \"{{ 'x' * 100000000 }}\"\n")
    with pytest.raises(EvalError, match="stopped past its"):
        load(folder, HEAD + 'doc_to_text: "{% for i in range(10**9) %}{% endfor %}"\n')


def test_a_template_naming_a_missing_field_says_which(folder: Path) -> None:
    with pytest.raises(EvalError, match=r"'nope' is undefined; the row has \['c', 'g', 'q'\]"):
        load(folder, HEAD + 'doc_to_text: "{{ nope }}"\n')


@pytest.mark.parametrize("name", ["../secret.jsonl", "/etc/passwd", "sub/../../secret.jsonl"])
def test_data_files_outside_the_folder_are_refused(folder: Path, name: str) -> None:
    (folder.parent / "secret.jsonl").write_text(json.dumps({"q": "s", "c": ["a"], "g": 0}) + "\n")
    text = HEAD.replace("test: d.jsonl", f"test: {json.dumps(name)}") + "doc_to_text: q\n"
    with pytest.raises(EvalError, match="is outside the task's folder"):
        load(folder, text)


def test_a_symlink_out_of_the_folder_is_refused(folder: Path) -> None:
    (folder.parent / "secret.jsonl").write_text(json.dumps({"q": "s", "c": ["a"], "g": 0}) + "\n")
    (folder / "link.jsonl").symlink_to(folder.parent / "secret.jsonl")
    with pytest.raises(EvalError, match="is outside the task's folder"):
        load(folder, HEAD.replace("d.jsonl", "link.jsonl") + "doc_to_text: q\n")


def test_includes_outside_the_folder_and_cycles_are_refused(folder: Path) -> None:
    (folder.parent / "outside.yaml").write_text("doc_to_text: q\n")
    with pytest.raises(EvalError, match="included file '../outside.yaml' is outside"):
        load(folder, "include: ../outside.yaml\n" + HEAD)
    (folder / "a.yaml").write_text("include: t.yaml\n")
    with pytest.raises(EvalError, match="includes it back"):
        load(folder, "include: a.yaml\n" + HEAD + "doc_to_text: q\n")


def test_a_missing_data_file_names_the_path(folder: Path) -> None:
    with pytest.raises(EvalError, match=r"the data file 'gone.jsonl' is not there"):
        load(folder, HEAD.replace("d.jsonl", "gone.jsonl") + "doc_to_text: q\n")


def test_a_hub_dataset_says_owl_runs_local_files_only(folder: Path) -> None:
    with pytest.raises(EvalError, match="owl runs local data files only: dataset_path 'cais/mmlu'"):
        load(folder, "task: t\ndataset_path: cais/mmlu\ntest_split: test\ndoc_to_text: q\n")


def test_malformed_data_and_configs_say_what_to_fix(folder: Path) -> None:
    (folder / "bad.jsonl").write_text('{"q": "x"}\n{not json\n')
    with pytest.raises(EvalError, match="bad.jsonl: line 2 is not JSON"):
        load(folder, HEAD.replace("d.jsonl", "bad.jsonl") + "doc_to_text: q\n")
    with pytest.raises(EvalError, match="test_split 'valid' is not in data_files"):
        load(folder, HEAD.replace("test_split: test", "test_split: valid") + "doc_to_text: q\n")
    with pytest.raises(EvalError, match="doc_to_text is missing"):
        load(folder, HEAD)
    with pytest.raises(EvalError, match="output_type 'ranking' is not one of"):
        load(folder, HEAD.replace("multiple_choice", "ranking") + "doc_to_text: q\n")
    with pytest.raises(EvalError, match="num_fewshot is 5 but the few-shot pool has 1 rows"):
        load(folder, HEAD + "doc_to_text: q\nnum_fewshot: 5\n")
    with pytest.raises(EvalError, match="not a task file"):
        load(folder, "dataset_path: json\n")
    with pytest.raises(EvalError, match="not Python literal|not a Python literal"):
        load(
            folder,
            HEAD.replace("doc_to_choice: c", 'doc_to_choice: "{{ q }}"') + "doc_to_text: q\n",
        )
    with pytest.raises(EvalError, match="owl decodes greedily"):
        load(
            folder,
            HEAD.replace("multiple_choice", "generate_until")
            + "doc_to_text: q\ngeneration_kwargs: {do_sample: true}\n",
        )
