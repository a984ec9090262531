"""Task loading and the exact request strings lm-eval would send (no model involved)."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from owl.errors import EvalError
from owl.evals.tasks import Answer, Question, Request, Task, load_tasks, shipped_task_names
from owl.evals.tasks.loading import SHIPPED

SHIPPED_NAMES = ["arithmetic", "capitals", "json_extraction", "safety", "tool_calling", "units"]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


MC_ROWS = [
    {"q": "2 + 2", "choices": ["4", "22", "5"], "gold": 0},
    {"q": "3 + 4", "choices": ["34", "7", "1"], "gold": 1},
    {"q": "9 - 3", "choices": ["12", "93", "6"], "gold": 2},
]
TRAIN_ROWS = [
    {"q": "1 + 1", "choices": ["2", "11"], "gold": 0},
    {"q": "5 + 5", "choices": ["55", "10"], "gold": 1},
    {"q": "2 × 3", "choices": ["6", "23"], "gold": 0},
    {"q": "8 ÷ 2", "choices": ["4", "82"], "gold": 0},
]
MC_YAML = """\
task: tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    train: train.jsonl
    test: test.jsonl
training_split: train
fewshot_split: train
test_split: test
num_fewshot: 2
output_type: multiple_choice
description: "Sums.\\n\\n"
doc_to_text: "Q: {{q}}\\nA:"
doc_to_choice: choices
doc_to_target: gold
"""


@pytest.fixture
def mc_task(tmp_path: Path) -> Task:
    write_jsonl(tmp_path / "train.jsonl", TRAIN_ROWS)
    write_jsonl(tmp_path / "test.jsonl", MC_ROWS)
    (tmp_path / "tiny.yaml").write_text(MC_YAML, encoding="utf-8")
    (task,) = load_tasks(str(tmp_path / "tiny.yaml"))
    return task


def shot(row: dict) -> str:
    return f"Q: {row['q']}\nA: {row['choices'][row['gold']]}\n\n"


def test_every_shipped_task_loads_and_builds_its_questions() -> None:
    assert shipped_task_names() == SHIPPED_NAMES
    sizes = {}
    for name in SHIPPED_NAMES:
        (task,) = load_tasks(name)
        assert task.name == name
        assert task.digest.startswith("sha256:") and len(task.digest) == 71
        questions = task.questions()
        sizes[name] = len(questions)
        assert [q.index for q in questions] == list(range(len(questions)))
        assert all(q.requests for q in questions)
        assert task.questions(limit=3) == questions[:3]
    assert sizes == {
        "arithmetic": 40,
        "capitals": 40,
        "units": 30,
        "json_extraction": 20,
        "tool_calling": 20,
        "safety": 40,
    }


def test_the_shipped_folder_is_every_shipped_task_and_ships_in_the_package() -> None:
    assert sorted(t.name for t in load_tasks(str(SHIPPED))) == SHIPPED_NAMES
    # the wheel is every file under owl/ (pyproject: packages = ["owl"]) that git keeps
    files = [str(p) for p in SHIPPED.iterdir()]
    ignored = subprocess.run(["git", "check-ignore", *files], capture_output=True, text=True)
    assert ignored.returncode == 1 and not ignored.stdout, ignored.stdout


def test_multiple_choice_requests_are_lm_evals_strings_with_seeded_fewshot(mc_task: Task) -> None:
    assert mc_task.output_type == "multiple_choice"
    assert mc_task.metric_names == ("acc", "acc_norm")  # lm-eval's defaults
    questions = mc_task.questions()
    # lm-eval: one Random(1234) for the task, sample(train, 2) for each question in turn
    rnd = random.Random(1234)
    for question, row in zip(questions, MC_ROWS, strict=True):
        shots = rnd.sample(TRAIN_ROWS, 2)
        context = "Sums.\n\n" + "".join(shot(s) for s in shots) + f"Q: {row['q']}\nA:"
        assert question.requests == tuple(
            Request("loglikelihood", context, f" {c}") for c in row["choices"]
        )
        assert question.target == row["gold"]
        assert question.doc == row
    first = random.Random(1234).sample(TRAIN_ROWS, 2)
    assert questions[0].requests[0].context == (
        f"Sums.\n\n{shot(first[0])}{shot(first[1])}Q: 2 + 2\nA:"
    )
    # the same sequence again for a new run, and with a limit
    assert mc_task.questions(limit=2) == questions[:2]


def test_fewshot_from_the_test_split_leaves_the_question_out(tmp_path: Path) -> None:
    rows = [{"q": f"{i} + 1", "choices": [str(i + 1), "0"], "gold": 0} for i in range(6)]
    write_jsonl(tmp_path / "test.jsonl", rows)
    (tmp_path / "t.yaml").write_text(
        "task: t\ndataset_path: json\ndataset_kwargs: {data_files: {test: test.jsonl}}\n"
        "test_split: test\nfewshot_split: test\nnum_fewshot: 3\noutput_type: multiple_choice\n"
        'doc_to_text: "Q: {{q}}\\nA:"\ndoc_to_choice: choices\ndoc_to_target: gold\n'
        "target_delimiter: ' '\nfewshot_delimiter: \"\\n###\\n\"\n",
        encoding="utf-8",
    )
    (task,) = load_tasks(str(tmp_path / "t.yaml"))
    rnd = random.Random(1234)
    for question, row in zip(task.questions(), rows, strict=True):
        shots = [d for d in rnd.sample(rows, 4) if d != row][:3]
        expected = "".join(f"Q: {d['q']}\nA: {d['choices'][0]}\n###\n" for d in shots)
        assert question.requests[0].context == expected + f"Q: {row['q']}\nA:"
        assert row["q"] + "\nA: " not in question.requests[0].context.rsplit("###", 1)[0]


def test_generate_until_takes_until_max_gen_toks_and_a_template_target(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"a": 2, "b": 3}, {"a": 10, "b": 5}])
    (tmp_path / "g.yaml").write_text(
        "task: g\ndataset_path: json\ndata_files: {validation: d.jsonl}\n"
        "validation_split: validation\n"
        "output_type: generate_until\ndoc_to_text: '{{a}} times {{b}} is'\n"
        "doc_to_target: '{{a * b}}'\ngeneration_kwargs: {until: '.', max_gen_toks: 8}\n",
        encoding="utf-8",
    )
    (task,) = load_tasks(str(tmp_path / "g.yaml"))
    first, second = task.questions()
    assert first.requests == (
        Request("generate_until", "2 times 3 is", until=(".",), max_tokens=8),
    )
    assert (first.target, second.target) == ("6", "50")
    assert task.score(first, [Answer(text="6")]) == {"exact_match": 1.0}
    assert task.score(first, [Answer(text=" 6")]) == {"exact_match": 0.0}  # lm-eval: no strip


def test_generate_until_defaults_to_the_fewshot_delimiter(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"x": "a"}])
    (tmp_path / "g.yaml").write_text(
        "task: g\ndataset_path: json\ndata_files: d.jsonl\nvalidation_split: train\n"
        "doc_to_text: x\ndoc_to_target: x\n",
        encoding="utf-8",
    )
    (task,) = load_tasks(str(tmp_path / "g.yaml"))
    (question,) = task.questions()
    assert task.output_type == "generate_until"
    assert question.requests[0].until == ("\n\n",) and question.requests[0].max_tokens == 256
    assert question.requests[0].context == "a"  # a field name is the field's value


def test_choices_from_a_template_and_a_yaml_list_and_a_string_target(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"p": "Sky", "c1": "blue", "c2": "green", "label": "blue"}])
    base = (
        "dataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: '{{p}} is'\n"
    )
    (tmp_path / "a.yaml").write_text(
        "task: a\n" + base + 'doc_to_choice: "{{[c1, c2]}}"\ndoc_to_target: label\n'
    )
    (tmp_path / "b.yaml").write_text(
        "task: b\n" + base + "doc_to_choice: ['green', 'blue']\ndoc_to_target: label\n"
        "target_delimiter: ': '\n"
    )
    (a,) = load_tasks(str(tmp_path / "a.yaml"))
    (b,) = load_tasks(str(tmp_path / "b.yaml"))
    (qa,) = a.questions()
    (qb,) = b.questions()
    assert [r.continuation for r in qa.requests] == [" blue", " green"] and qa.target == 0
    assert [r.continuation for r in qb.requests] == [": green", ": blue"] and qb.target == 1
    assert qb.requests[0].context == "Sky is"


def test_include_merges_the_sibling_yaml_and_the_file_wins(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"q": "x", "c": ["y", "z"], "g": 1}])
    (tmp_path / "_base.yaml").write_text(
        "dataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: 'base {{q}}'\n"
        "doc_to_choice: c\ndoc_to_target: g\n"
    )
    (tmp_path / "child.yaml").write_text(
        "include: _base.yaml\ntask: child\ndoc_to_text: 'child {{q}}'\n"
    )
    (task,) = load_tasks(str(tmp_path / "child.yaml"))
    (question,) = task.questions()
    assert question.requests[0].context == "child x"
    # the digest covers the included file too
    before = task.digest
    (tmp_path / "_base.yaml").write_text((tmp_path / "_base.yaml").read_text() + "# edit\n")
    assert load_tasks(str(tmp_path / "child.yaml"))[0].digest != before


def test_a_folder_is_every_task_yaml_and_a_group_names_tasks_and_tags(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"q": "x", "c": ["y", "z"], "g": 1}])
    common = (
        "dataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\ntest_split: test\n"
        "output_type: multiple_choice\ndoc_to_choice: c\ndoc_to_target: g\n"
    )
    (tmp_path / "one.yaml").write_text("task: one\ntag: sums\ndoc_to_text: '1 {{q}}'\n" + common)
    (tmp_path / "two.yaml").write_text("task: two\ntag: sums\ndoc_to_text: '2 {{q}}'\n" + common)
    (tmp_path / "three.yaml").write_text("task: three\ndoc_to_text: '3 {{q}}'\n" + common)
    (tmp_path / "group.yaml").write_text("group: all\ntask: [sums, three]\n")
    assert [t.name for t in load_tasks(str(tmp_path))] == ["one", "three", "two"]
    assert [t.name for t in load_tasks(str(tmp_path / "group.yaml"))] == ["one", "two", "three"]
    (tmp_path / "bad_group.yaml").write_text("group: bad\ntask: [nothing_here]\n")
    with pytest.raises(EvalError, match="nothing_here"):
        load_tasks(str(tmp_path / "bad_group.yaml"))


def test_csv_data_reads_typed_columns(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("question,a,b,label\nUp?,yes,no,0\nDown?,yes,no,1\n")
    (tmp_path / "c.yaml").write_text(
        "task: c\ndataset_path: csv\ndataset_kwargs: {data_files: {test: d.csv}}\n"
        "test_split: test\n"
        "output_type: multiple_choice\ndoc_to_text: question\ndoc_to_choice: '{{[a, b]}}'\n"
        "doc_to_target: label\n"
    )
    (task,) = load_tasks(str(tmp_path / "c.yaml"))
    assert [q.target for q in task.questions()] == [0, 1]


def test_loglikelihood_and_rolling_requests_and_scores(tmp_path: Path) -> None:
    write_jsonl(
        tmp_path / "d.jsonl", [{"ctx": "The sky is", "cont": " blue", "text": "one two three"}]
    )
    head = "dataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\ntest_split: test\n"
    (tmp_path / "ll.yaml").write_text(
        "task: ll\n" + head + "output_type: loglikelihood\ndoc_to_text: ctx\ndoc_to_target: cont\n"
    )
    (tmp_path / "roll.yaml").write_text(
        "task: roll\n" + head + "output_type: loglikelihood_rolling\ndoc_to_text: ''\n"
        "doc_to_target: text\n"
    )
    (ll,) = load_tasks(str(tmp_path / "ll.yaml"))
    (question,) = ll.questions()
    assert question.requests == (Request("loglikelihood", "The sky is", " blue"),)
    score = ll.score(question, [Answer(logprob=-2.0, greedy=True)])
    assert score == {"loglikelihood": -2.0, "acc": 1.0}
    assert ll.aggregate([score]) == {"perplexity": pytest.approx(7.389056, rel=1e-6), "acc": 1.0}

    (roll,) = load_tasks(str(tmp_path / "roll.yaml"))
    (question,) = roll.questions()
    assert question.requests == (Request("loglikelihood_rolling", "one two three"),)
    score = roll.score(question, [Answer(logprob=-6.0)])
    assert score == {"loglikelihood": -6.0, "words": 3.0, "bytes": 13.0}
    result = roll.aggregate([score])
    assert result["word_perplexity"] == pytest.approx(7.389056, rel=1e-6)  # exp(6 / 3)
    assert result["bits_per_byte"] == pytest.approx(6.0 / 13.0 / 0.6931471805599453)


def test_an_unknown_name_lists_the_shipped_tasks() -> None:
    with pytest.raises(EvalError, match="arithmetic, capitals"):
        load_tasks("no_such_task")


def test_question_is_plain_data() -> None:
    q = Question(0, {"a": 1}, (Request("loglikelihood", "x", " y"),), 0)
    assert q.requests[0].until == () and q.requests[0].chat is False


def test_description_gen_prefix_and_number_types_render_as_lm_eval_did(tmp_path: Path) -> None:
    # The expected strings are what lm-eval 0.4.13 built for this task (build_all_requests,
    # fewshot seed 1234): the description before the shots with nothing after it, the
    # gen_prefix joined with a space, 1 rendered "1.0" because its column holds 2.5, and —
    # with neither test_split nor fewshot_split set — shots drawn as if from the test split.
    train = [{"q": "1 + 1", "a": "2", "w": 1}, {"q": "2 + 2", "a": "4", "w": 2.5}]
    train.append({"q": "3 + 3", "a": "6", "w": 3})
    write_jsonl(tmp_path / "train.jsonl", train)
    write_jsonl(
        tmp_path / "val.jsonl",
        [{"q": "4 + 4", "a": "8", "w": 4}, {"q": "5 + 5", "a": "10", "w": 5}],
    )
    (tmp_path / "g.yaml").write_text(
        "task: gp\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    train: train.jsonl\n"
        "    validation: val.jsonl\ntraining_split: train\nvalidation_split: validation\n"
        'num_fewshot: 2\noutput_type: generate_until\ndescription: "Sums ({{w}}).\\n"\n'
        'doc_to_text: "Q: {{q}} [w={{w}}]"\ndoc_to_target: a\ngen_prefix: "A:"\n'
        'generation_kwargs:\n  until: ["\\n"]\n'
    )
    (task,) = load_tasks(str(tmp_path / "g.yaml"))
    assert [q.requests[0].context for q in task.questions()] == [
        "Sums (4.0).\nQ: 2 + 2 [w=2.5] A: 4\n\nQ: 1 + 1 [w=1.0] A: 2\n\nQ: 4 + 4 [w=4.0] A:",
        "Sums (5.0).\nQ: 1 + 1 [w=1.0] A: 2\n\nQ: 3 + 3 [w=3.0] A: 6\n\nQ: 5 + 5 [w=5.0] A:",
    ]
