"""One lm-evaluation-harness task, from its merged YAML config: questions and scores.

Requests are built as lm-eval 0.4.13 builds them without a chat template (see
lm_eval_prompts); few-shot examples are drawn as its default sampler draws them:
one `random.Random(1234)` for the task (lm-eval's fewshot_random_seed), `sample(pool, n)`
for each question in order — `n + 1`, less the question itself, when the few-shot split
is the test split — so a run with --limit N sees the few-shot examples lm-eval's does.
Scoring follows `ConfigurableTask.process_results` (see metrics).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from owl.errors import EvalError
from owl.evals.tasks.datafiles import LOCAL_LOADERS, confined, read_split, split_files, unify
from owl.evals.tasks.lm_eval_fewshot import FewshotSampler, fewshot_fields
from owl.evals.tasks.lm_eval_prompts import Fields, Prompts, qa_turn
from owl.evals.tasks.metrics import (
    EXACT_MATCH_OPTIONS,
    argmax,
    build_filter,
    choice_predictions,
    exact_match,
    f1_parts,
)
from owl.evals.tasks.request import Answer, Question, Request
from owl.evals.tasks.task import Task, files_digest

DEFAULT_MAX_GEN_TOKS = 256
OUTPUT_TYPES = ("multiple_choice", "generate_until", "loglikelihood", "loglikelihood_rolling")
DEFAULT_METRICS = {
    "multiple_choice": ("acc", "acc_norm"),
    "generate_until": ("exact_match",),
    "loglikelihood": ("perplexity", "acc"),
    "loglikelihood_rolling": ("word_perplexity", "byte_perplexity", "bits_per_byte"),
}
# The metrics owl computes per output type, each with lm-eval's aggregation name.
METRICS = {
    "multiple_choice": {"acc": "mean", "acc_norm": "mean", "exact_match": "mean", "f1": "f1"},
    "generate_until": {"exact_match": "mean"},
    "loglikelihood": {"acc": "mean", "perplexity": "perplexity"},
    "loglikelihood_rolling": {
        "word_perplexity": "weighted_perplexity",
        "byte_perplexity": "weighted_perplexity",
        "bits_per_byte": "bits_per_byte",
    },
}
# Keys that need Python code or data owl does not run; each refused by name.
_REFUSED = {
    "class": "a Python task class",
    "custom_dataset": "a Python dataset function",
    "process_docs": "Python document processing",
    "process_results": "Python scoring",
    "use_prompt": "a promptsource prompt",
    "doc_to_image": "images",
    "doc_to_audio": "audio",
}


class LmEvalTask(Task):
    """A task from an lm-eval YAML file (its includes merged), reading local data files."""

    def __init__(
        self, config: dict[str, Any], *, path: Path, root: Path, files: list[Path]
    ) -> None:
        self.config = config
        self.path = path
        self.name = str(config["task"])
        where = f"task {self.name} ({path.name})"
        for key, what in _REFUSED.items():
            if config.get(key) is not None:
                raise EvalError(f"{where}: `{key}` asks for {what}; owl runs tasks as data only")
        self.output_type = config.get("output_type") or "generate_until"
        if self.output_type not in OUTPUT_TYPES:
            raise EvalError(
                f"{where}: output_type {self.output_type!r} is not one of {', '.join(OUTPUT_TYPES)}"
            )
        if int(config.get("repeats") or 1) != 1:
            raise EvalError(f"{where}: repeats must be 1; owl asks a model once per question")
        self.splits, data_paths = _read_data(config, path=path, root=root, where=where)
        self.digest = files_digest([*files, *data_paths], root=root)
        self._eval_split = _eval_split(config, self.splits, where=where)
        docs = self.splits[self._eval_split]
        if not docs:
            raise EvalError(f"{where}: the {self._eval_split} split has no rows")
        self.prompts = Prompts(
            task=self.name, features=frozenset(docs[0]), description=config.get("description") or ""
        )
        self.fields = _fields(config)
        self.fewshot_fields = fewshot_fields(config, self.fields)
        self._sampler = FewshotSampler(config, self.splits, where=where)
        self.num_fewshot = int(config.get("num_fewshot") or 0)
        if self.num_fewshot and self.output_type == "loglikelihood_rolling":
            raise EvalError(f"{where}: a loglikelihood_rolling task takes no few-shot examples")
        self._metric_options = _metrics(config, self.output_type, where=where)
        self.until, self.max_tokens = _generation(config, self.output_type, where=where)
        self.filters = _filters(config, self.output_type, where=where)
        names = list(self._metric_options)
        # With several filters lm-eval keys each metric by its filter: "exact_match,strict-match".
        if len(self.filters) > 1:
            names = [f"{m},{f}" for f, _ in self.filters for m in self._metric_options]
        self.metric_names = tuple(names)
        self._where = where
        first = self.prompts.turn(docs[0], self.fields, answered=True)
        self.multiple_input = isinstance(first[0], int) and first[1] is not None
        self.multiple_target = isinstance(first[2], list)

    # ---- questions --------------------------------------------------------------------

    def questions(self, limit: int | None = None) -> list[Question]:
        docs = self.splits[self._eval_split]
        docs = docs if limit is None else docs[: max(limit, 0)]
        draw = self._sampler.start()
        return [self._question(i, doc, draw(doc, self.num_fewshot)) for i, doc in enumerate(docs)]

    def _question(self, index: int, doc: dict[str, Any], fewshot: list[dict[str, Any]]) -> Question:
        head = self.prompts.context_head(
            doc, fewshot, self.fewshot_fields, multiple_input=self.multiple_input
        )
        text, choices, target, prefix = self.prompts.turn(doc, self.fields, answered=True)
        delimiter = self.fields.target_delimiter
        if self.output_type == "multiple_choice":
            if choices is None:
                raise EvalError(f"{self._where}: a multiple_choice task needs doc_to_choice")
            if self.multiple_input:
                contexts = [head + self._turn(str(c), prefix, "") for c in choices]
                requests = [
                    Request("loglikelihood", ctx, f"{delimiter}{target}") for ctx in contexts
                ]
                gold = _gold(text, choices)
            else:
                ctx = head + self._turn(text, prefix, delimiter)
                requests = [Request("loglikelihood", ctx, f"{delimiter}{c}") for c in choices]
                gold = _gold(target, choices)
            return Question(index, doc, tuple(requests), gold)
        if self.output_type == "loglikelihood_rolling":
            return Question(
                index, doc, (Request("loglikelihood_rolling", _text(target, self._where)),), target
            )
        ctx = head + self._turn(text, prefix, delimiter)
        if self.output_type == "loglikelihood":
            request = Request("loglikelihood", ctx, _text(target, self._where))
            return Question(index, doc, (request,), target)
        if choices is not None and isinstance(target, int):
            if not 0 <= target < len(choices):  # lm-eval: with doc_to_choice, an index
                raise EvalError(f"{self._where}: row {index}'s target {target} is not a choice")
            target = choices[target]
        request = Request("generate_until", ctx, until=self.until, max_tokens=self.max_tokens)
        return Question(index, doc, (request,), target)

    def _turn(self, text: Any, prefix: str | None, delimiter: str) -> str:
        return qa_turn(
            text,
            None,
            None,
            gen_prefix=prefix,
            target_delimiter=delimiter,
            fewshot_delimiter="",
            task=self.name,
        )

    # ---- scores -----------------------------------------------------------------------

    def score(self, question: Question, answers: list[Answer]) -> dict[str, float]:
        if len(answers) != len(question.requests):
            raise EvalError(
                f"{self._where}: {len(answers)} answers for {len(question.requests)} requests"
            )
        if self.output_type == "generate_until":
            out: dict[str, float] = {}
            for filter_name, run in self.filters:
                suffix = f",{filter_name}" if len(self.filters) > 1 else ""
                result = run(answers[0].text or "")
                for metric, options in self._metric_options.items():
                    out[metric + suffix] = _matches(result, question.target, options)
            return out
        lls = [_logprob(a, self._where) for a in answers]
        if self.output_type == "loglikelihood_rolling":
            text = question.target
            return {
                "loglikelihood": lls[0],
                "words": float(len(re.split(r"\s+", text))),
                "bytes": float(len(text.encode())),
            }
        if self.output_type == "loglikelihood":
            out = {"loglikelihood": lls[0]} if "perplexity" in self._metric_options else {}
            if "acc" in self._metric_options:
                out["acc"] = float(bool(answers[0].greedy))
            return out
        choices = [r.continuation[len(self.fields.target_delimiter) :] for r in question.requests]
        if self.multiple_input:
            choices = [
                str(c) for c in self.prompts.choices(question.doc, self.fields.doc_to_choice)
            ]
        pred, pred_norm = choice_predictions(lls, choices)
        gold = question.target
        golds = gold if isinstance(gold, list) else [gold]
        scores: dict[str, float] = {}
        if "acc" in self._metric_options:
            scores["acc"] = float(pred in golds)
        if "acc_norm" in self._metric_options:
            scores["acc_norm"] = float(pred_norm in golds)
        if "exact_match" in self._metric_options:
            scores["exact_match"] = float(
                any(0 <= g < len(answers) and bool(answers[g].greedy) for g in golds)
            )
        if "f1" in self._metric_options:
            scores.update(f1_parts(golds[0], pred))
        return scores

    def prediction(self, question: Question, answers: list[Answer]) -> Any:
        if self.output_type == "generate_until":
            return self.filters[0][1](answers[0].text or "")
        lls = [_logprob(a, self._where) for a in answers]
        if self.output_type == "multiple_choice":
            return argmax(lls)
        return lls[0]


# ---- reading the config ----------------------------------------------------------------


def _read_data(
    config: dict[str, Any], *, path: Path, root: Path, where: str
) -> tuple[dict[str, list[dict[str, Any]]], list[Path]]:
    loader = config.get("dataset_path")
    kwargs = config.get("dataset_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise EvalError(f"{where}: dataset_kwargs must be a mapping")
    data_files = kwargs.get("data_files", config.get("data_files"))
    if loader not in LOCAL_LOADERS or data_files is None:
        raise EvalError(
            f"{where}: owl runs local data files only: dataset_path {loader!r} is a Hugging Face "
            "dataset, which owl does not download; export the splits to JSON Lines or CSV beside "
            "the YAML and write `dataset_path: json` with `dataset_kwargs: {data_files: {test: "
            "test.jsonl}}`"
        )
    splits, paths = {}, []
    for split, names in split_files(data_files, where=where).items():
        files = [confined(root, path.parent, n, where=where) for n in names]
        splits[split] = read_split(loader, files, where=where, field=kwargs.get("field"))
        paths.extend(files)
    return unify(splits), paths


def _eval_split(config: dict[str, Any], splits: dict[str, Any], *, where: str) -> str:
    for key in ("test_split", "validation_split"):
        if config.get(key) is not None:
            name = str(config[key])
            if name not in splits:
                raise EvalError(
                    f"{where}: {key} {name!r} is not in data_files (it has {', '.join(splits)})"
                )
            return name
    raise EvalError(f"{where}: name the split to evaluate with test_split or validation_split")


def _fields(config: dict[str, Any]) -> Fields:
    if config.get("doc_to_text") is None:
        raise EvalError(f"task {config['task']}: doc_to_text is missing")
    return Fields(
        doc_to_text=config.get("doc_to_text"),
        doc_to_target=config.get("doc_to_target"),
        doc_to_choice=config.get("doc_to_choice"),
        gen_prefix=config.get("gen_prefix"),
        target_delimiter=_delimiter(config, "target_delimiter", " "),
        fewshot_delimiter=_delimiter(config, "fewshot_delimiter", "\n\n"),
    )


def _delimiter(config: dict[str, Any], key: str, default: str) -> str:
    value = config.get(key, default)
    if not isinstance(value, str):
        raise EvalError(f"task {config['task']}: {key} must be text")
    return value


def _metrics(config: dict[str, Any], output_type: str, *, where: str) -> dict[str, dict[str, Any]]:
    """{metric: its options} from metric_list (lm-eval's defaults for the output type without)."""
    known = METRICS[output_type]
    entries = config.get("metric_list")
    if entries is None:
        return {name: {} for name in DEFAULT_METRICS[output_type]}
    if not isinstance(entries, list) or not entries:
        raise EvalError(f"{where}: metric_list must be a list of {{metric: name}} entries")
    chosen: dict[str, dict[str, Any]] = {}
    for entry in entries:
        name = entry.get("metric") if isinstance(entry, dict) else None
        if not isinstance(name, str):
            raise EvalError(f"{where}: each metric_list entry needs `metric: name`")
        if name not in known:
            raise EvalError(
                f"{where}: owl does not compute {name!r} for {output_type} tasks; "
                f"it computes {', '.join(known)}"
            )
        aggregation = entry.get("aggregation", known[name])
        if aggregation != known[name]:
            raise EvalError(
                f"{where}: {name} aggregates by {known[name]} in owl, not {aggregation!r}"
            )
        options = {
            k: v
            for k, v in entry.items()
            if k not in ("metric", "aggregation", "higher_is_better", "hf_evaluate")
        }
        allowed = (
            EXACT_MATCH_OPTIONS
            if name == "exact_match" and output_type == "generate_until"
            else frozenset()
        )
        if set(options) - allowed:
            raise EvalError(f"{where}: {name} takes no option {sorted(set(options) - allowed)}")
        chosen[name] = options
    return chosen


def _generation(
    config: dict[str, Any], output_type: str, *, where: str
) -> tuple[tuple[str, ...], int]:
    fewshot_delimiter = config.get("fewshot_delimiter", "\n\n")
    kwargs = config.get("generation_kwargs")
    if kwargs is None:
        return (fewshot_delimiter,), DEFAULT_MAX_GEN_TOKS
    if not isinstance(kwargs, dict):
        raise EvalError(f"{where}: generation_kwargs must be a mapping")
    if output_type == "generate_until" and (
        kwargs.get("do_sample") or float(kwargs.get("temperature") or 0) > 0
    ):
        raise EvalError(f"{where}: owl decodes greedily; set do_sample: false and temperature: 0")
    until = kwargs.get("until", [fewshot_delimiter])
    until = [until] if isinstance(until, str) else until
    if not isinstance(until, list) or not all(isinstance(u, str) for u in until):
        raise EvalError(f"{where}: generation_kwargs.until must be text or a list of texts")
    max_tokens = kwargs.get("max_gen_toks", DEFAULT_MAX_GEN_TOKS)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise EvalError(f"{where}: generation_kwargs.max_gen_toks must be a positive whole number")
    return tuple(until), max_tokens


def _filters(
    config: dict[str, Any], output_type: str, *, where: str
) -> list[tuple[str, Callable[[str], Any]]]:
    entries = config.get("filter_list")
    if output_type != "generate_until" or entries is None:
        return [("none", build_filter([{"function": "take_first"}], where=where))]
    if not isinstance(entries, list) or not entries:
        raise EvalError(f"{where}: filter_list must be a list of {{name, filter}} entries")
    built = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise EvalError(f"{where}: each filter_list entry needs a `name` and a `filter` list")
        built.append(
            (
                entry["name"],
                build_filter(entry.get("filter"), where=f"{where} filter {entry['name']}"),
            )
        )
    return built


def _gold(target: Any, choices: list[Any]) -> Any:
    """lm-eval's gold index (or indices); -100 for a target that is not among the choices."""

    def index(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value if value < len(choices) else -100
        if isinstance(value, str) and value in choices:
            return choices.index(value)
        return -100

    return [index(v) for v in target] if isinstance(target, list) else index(target)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise EvalError(f"{where}: doc_to_target gave {value!r}; this output type scores text")
    return value


def _logprob(answer: Answer, where: str) -> float:
    if answer.logprob is None:
        raise EvalError(f"{where}: the model gave no log-likelihood for a loglikelihood request")
    return answer.logprob


def _matches(result: Any, gold: Any, options: dict[str, Any]) -> float:
    golds = gold if isinstance(gold, list) else [gold]
    text = result if isinstance(result, str) else str(result)
    return float(any(exact_match(text, str(g), **options) for g in golds))
