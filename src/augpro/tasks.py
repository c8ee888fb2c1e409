"""Task registry: where each GLUE task's columns live, its label set and its metric.

A :class:`TaskSpec` is everything the rest of augpro needs to know about a task. GLUE tasks are
registered here; a custom CSV/TSV/JSONL task is described by a spec built at run time
(:func:`custom_task`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from augpro.errors import UserError


@dataclass(frozen=True)
class TaskSpec:
    """Description of one classification or regression task.

    Attributes:
        name: canonical task name (``"sst2"``, ``"rte"``, ...).
        text_columns: one column (single sentence) or two (sentence pair).
        label_column: column holding the gold label or score.
        labels: label names in class-index order; ``None`` for regression.
        metrics: metric names computed on the dev set (see :mod:`augpro.metrics`).
        glue_dir: folder name in the GLUE distribution (``"SST-2"``).
        has_header: whether the GLUE TSV files start with a header row.
        column_index: for header-less files, column positions by name.
        label_map: raw label strings as they appear in the files -> label names.
        hub: ``(path, config)`` for ``datasets.load_dataset`` when online.
        hub_dev_split: name of the dev split on the hub.
    """

    name: str
    text_columns: tuple[str, ...]
    label_column: str
    labels: tuple[str, ...] | None
    metrics: tuple[str, ...]
    glue_dir: str | None = None
    has_header: bool = True
    column_index: dict[str, int] = field(default_factory=dict)
    label_map: dict[str, str] = field(default_factory=dict)
    hub: tuple[str, str] | None = None
    hub_dev_split: str = "validation"

    @property
    def is_regression(self) -> bool:
        return self.labels is None

    @property
    def num_labels(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def primary_metric(self) -> str:
        """The single number used to rank runs: the mean of the task's metrics."""
        return "score"


GLUE_TASKS: dict[str, TaskSpec] = {
    "sst2": TaskSpec(
        name="sst2", text_columns=("sentence",), label_column="label",
        labels=("negative", "positive"), metrics=("accuracy",), glue_dir="SST-2",
        label_map={"0": "negative", "1": "positive"}, hub=("nyu-mll/glue", "sst2"),
    ),
    "cola": TaskSpec(
        name="cola", text_columns=("sentence",), label_column="label",
        labels=("unacceptable", "acceptable"), metrics=("matthews_correlation",), glue_dir="CoLA",
        has_header=False, column_index={"source": 0, "label": 1, "mark": 2, "sentence": 3},
        label_map={"0": "unacceptable", "1": "acceptable"}, hub=("nyu-mll/glue", "cola"),
    ),
    "mrpc": TaskSpec(
        name="mrpc", text_columns=("#1 String", "#2 String"), label_column="Quality",
        labels=("not_equivalent", "equivalent"), metrics=("f1", "accuracy"), glue_dir="MRPC",
        label_map={"0": "not_equivalent", "1": "equivalent"}, hub=("nyu-mll/glue", "mrpc"),
    ),
    "rte": TaskSpec(
        name="rte", text_columns=("sentence1", "sentence2"), label_column="label",
        labels=("entailment", "not_entailment"), metrics=("accuracy",), glue_dir="RTE",
        hub=("nyu-mll/glue", "rte"),
    ),
    "stsb": TaskSpec(
        name="stsb", text_columns=("sentence1", "sentence2"), label_column="score",
        labels=None, metrics=("pearson", "spearman"), glue_dir="STS-B",
        hub=("nyu-mll/glue", "stsb"),
    ),
    "wnli": TaskSpec(
        name="wnli", text_columns=("sentence1", "sentence2"), label_column="label",
        labels=("not_entailment", "entailment"), metrics=("accuracy",), glue_dir="WNLI",
        label_map={"0": "not_entailment", "1": "entailment"}, hub=("nyu-mll/glue", "wnli"),
    ),
    # Not available offline here (files too large); defined for online users and full GLUE dirs.
    "mnli": TaskSpec(
        name="mnli", text_columns=("sentence1", "sentence2"), label_column="gold_label",
        labels=("entailment", "neutral", "contradiction"), metrics=("accuracy",), glue_dir="MNLI",
        hub=("nyu-mll/glue", "mnli"), hub_dev_split="validation_matched",
    ),
    "qnli": TaskSpec(
        name="qnli", text_columns=("question", "sentence"), label_column="label",
        labels=("entailment", "not_entailment"), metrics=("accuracy",), glue_dir="QNLI",
        hub=("nyu-mll/glue", "qnli"),
    ),
    "qqp": TaskSpec(
        name="qqp", text_columns=("question1", "question2"), label_column="is_duplicate",
        labels=("not_duplicate", "duplicate"), metrics=("f1", "accuracy"), glue_dir="QQP",
        label_map={"0": "not_duplicate", "1": "duplicate"}, hub=("nyu-mll/glue", "qqp"),
    ),
}

_ALIASES = {"sst-2": "sst2", "sts-b": "stsb", "mnli-m": "mnli"}


def get_task(name: str) -> TaskSpec:
    """Look up a GLUE task by name (case-insensitive; ``SST-2`` and ``sst2`` both work)."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in GLUE_TASKS:
        known = ", ".join(sorted(GLUE_TASKS))
        raise UserError(f"unknown task {name!r}; known tasks: {known} (or use --train-file/--dev-file)")
    return GLUE_TASKS[key]


def custom_task(
    text_columns: tuple[str, ...],
    label_column: str,
    labels: tuple[str, ...] | None,
    name: str = "custom",
) -> TaskSpec:
    """A task read from user files. ``labels=None`` makes it a regression task."""
    if not 1 <= len(text_columns) <= 2:
        raise UserError("--text-columns takes one column or two (a sentence pair), comma-separated")
    metrics = ("pearson", "spearman") if labels is None else ("accuracy", "macro_f1")
    return TaskSpec(name=name, text_columns=tuple(text_columns), label_column=label_column,
                    labels=labels, metrics=metrics)
