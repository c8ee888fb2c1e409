"""Loading task data, seeded nested subsets, tokenization and dynamic-padding collation.

Three sources, one result (:class:`Split`):

* a local folder in the GLUE distribution layout (``--data-dir`` or ``AUGPRO_DATA_DIR``);
* the Hugging Face hub (``--from-hub``; needs the ``datasets`` extra and a network);
* a pair of CSV/TSV/JSONL files with named columns (``--train-file``/``--dev-file``).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from augpro.errors import UserError
from augpro.tasks import TaskSpec, custom_task

DATA_DIR_ENV = "AUGPRO_DATA_DIR"

# Column names of the GLUE tasks on the Hugging Face hub (they differ from the TSV headers).
_HUB_TEXT_COLUMNS = {
    "sst2": ("sentence",), "cola": ("sentence",), "mrpc": ("sentence1", "sentence2"),
    "rte": ("sentence1", "sentence2"), "stsb": ("sentence1", "sentence2"),
    "wnli": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"), "qqp": ("question1", "question2"),
}

csv.field_size_limit(sys.maxsize)


@dataclass
class Split:
    """One split of a task: texts (one tuple per example), labels, and source row ids.

    ``labels`` holds class indices for classification and floats for regression.
    ``ids`` are the row positions in the original file, kept through subsetting.
    """

    texts: list[tuple[str, ...]]
    labels: list[Any]
    ids: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.ids:
            self.ids = list(range(len(self.texts)))

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, positions: Sequence[int]) -> "Split":
        """The examples at ``positions`` (positions in this split, not source ids)."""
        return Split([self.texts[i] for i in positions], [self.labels[i] for i in positions],
                     [self.ids[i] for i in positions])


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------

class Rows(list):
    """Rows of a file as dicts, with ``lines``: the file line each row starts on (for messages)."""

    lines: list[int]


def _rows(items: list[dict[str, Any]], lines: list[int]) -> Rows:
    out = Rows(items)
    out.lines = lines
    return out


def _utf8_error(path: Path, exc: UnicodeDecodeError) -> UserError:
    """The first invalid byte's file offset and line (a text reader's offset is within its buffer)."""
    data = path.read_bytes()
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        data[start:].decode("utf-8")
        where, reason = exc.start, exc.reason
    except UnicodeDecodeError as full:
        where, reason = start + full.start, full.reason
    line = data.count(b"\n", 0, where) + 1
    return UserError(f"{path}: not valid UTF-8 text ({reason} at byte {where}, line {line})")


_DELIMITERS = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}


def _read_delimited(path: Path, delimiter: str, quoting: int, has_header: bool,
                    column_index: dict[str, int] | None = None, glue: bool = False) -> Rows:
    """Rows of a CSV/TSV file as dicts; malformed rows are a :class:`UserError` with the line."""
    kind = "TSV" if delimiter == "\t" else "CSV"
    rows: list[list[str]] = []
    starts: list[int] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, delimiter=delimiter, quoting=quoting)
            end = 0
            for row in reader:
                start, end = end + 1, reader.line_num
                if row and any(cell.strip() for cell in row):  # blank lines are skipped
                    rows.append(row)
                    starts.append(start)
    except UnicodeDecodeError as exc:
        raise _utf8_error(path, exc) from None
    except csv.Error as exc:
        raise UserError(f"{path}: cannot parse as {kind}: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if not rows or (has_header and len(rows) == 1):
        raise UserError(f"{path}: the file has no data rows")
    if len(rows[0]) == 1:  # one column only: a file with another delimiter?
        other = next((d for d in _DELIMITERS if d != delimiter and d in rows[0][0]), None)
        if other is not None:
            fix = ("GLUE files are tab-separated" if glue else
                   {",": "name a comma-separated file .csv", "\t": "name a tab-separated file .tsv"}.get(
                       other, "use commas (.csv) or tabs (.tsv)"))
            raise UserError(f"{path}: line {starts[0]} has one column with a {_DELIMITERS[delimiter]} delimiter "
                            f"but holds {_DELIMITERS[other]}s (wrong delimiter); {fix}")
    if has_header:
        header, body, body_starts = rows[0], rows[1:], starts[1:]
        dup = sorted({n for n in header if header.count(n) > 1})
        if dup:
            raise UserError(f"{path}: column name {dup[0]!r} appears more than once in the header")
        names: list[str | None] = list(header)
    else:
        assert column_index is not None
        body, body_starts = rows, starts
        names = [None] * (max(column_index.values()) + 1)
        for name, pos in column_index.items():
            names[pos] = name
    out = []
    for lineno, row in zip(body_starts, body):
        if len(row) != len(names):
            why = "an unclosed quote?" if any("\n" in cell for cell in row) else "malformed row or wrong delimiter"
            raise UserError(f"{path}: line {lineno} has {len(row)} field{'s' if len(row) != 1 else ''}, expected "
                            f"{len(names)} ({why})")
        out.append({n: v for n, v in zip(names, row) if n is not None})
    return _rows(out, body_starts)


def _read_jsonl(path: Path) -> Rows:
    rows, lines = [], []
    try:
        with open(path, encoding="utf-8-sig") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise UserError(f"{path}: line {lineno} is not valid JSON ({exc.msg})") from None
                except RecursionError:
                    raise UserError(f"{path}: line {lineno} is nested too deeply") from None
                if not isinstance(obj, dict):
                    raise UserError(f"{path}: line {lineno} is not a JSON object")
                rows.append(obj)
                lines.append(lineno)
    except UnicodeDecodeError as exc:
        raise _utf8_error(path, exc) from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if not rows:
        raise UserError(f"{path}: the file has no data rows")
    return _rows(rows, lines)


def read_table(path: str | Path) -> Rows:
    """Rows of a user CSV (``.csv``), TSV (``.tsv``/``.txt``) or JSON-lines (``.jsonl``) file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        return _read_jsonl(path)
    if suffix == ".csv":
        return _read_delimited(path, ",", csv.QUOTE_MINIMAL, has_header=True)
    if suffix in (".tsv", ".txt"):
        return _read_delimited(path, "\t", csv.QUOTE_NONE, has_header=True)
    raise UserError(f"{path}: unknown file type {suffix!r}; use .csv, .tsv or .jsonl")


def _clean_text(value: Any, where: str, column: str) -> str:
    if isinstance(value, (dict, list, bool)):
        raise UserError(f"{where}: column {column!r} holds a JSON {type(value).__name__}, not text")
    if value is None:
        raise UserError(f"{where}: empty text in column {column!r}")
    text = str(value)
    if not text.strip():
        raise UserError(f"{where}: empty text in column {column!r}")
    return text


def _is_empty(raw: Any) -> bool:
    return raw is None or not str(raw).strip()


def rows_to_split(rows: list[dict[str, Any]], task: TaskSpec, source: str) -> Split:
    """Validate rows against a task's columns and labels and turn them into a :class:`Split`."""
    columns = set(rows[0].keys())
    for col in (*task.text_columns, task.label_column):
        if col not in columns:
            raise UserError(f"{source}: missing column {col!r}; columns present: {sorted(columns)}")
    lines = getattr(rows, "lines", None)
    texts, labels = [], []
    for i, row in enumerate(rows):
        where = f"{source} line {lines[i]}" if lines else f"{source} row {i + 1}"
        texts.append(tuple(_clean_text(row.get(c), where, c) for c in task.text_columns))
        labels.append(parse_label(task, row.get(task.label_column), where))
    return Split(texts, labels)


def parse_label(task: TaskSpec, raw: Any, where: str) -> Any:
    """A raw label cell -> class index (classification) or float (regression)."""
    if _is_empty(raw):
        what = "score" if task.is_regression else "label"
        raise UserError(f"{where}: empty {what} in column {task.label_column!r}")
    if task.is_regression:
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise UserError(f"{where}: score {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise UserError(f"{where}: score {raw!r} is not a finite number")
        return value
    key = str(raw).strip()
    name = task.label_map.get(key, key)
    if name not in task.labels:
        raise UserError(f"{where}: unknown label {raw!r}; expected one of {list(task.label_map) or list(task.labels)}")
    return task.labels.index(name)


def resolve_data_dir(data_dir: str | None) -> Path:
    """The GLUE root folder from ``--data-dir`` or ``$AUGPRO_DATA_DIR``."""
    value = data_dir or os.environ.get(DATA_DIR_ENV)
    if not value:
        raise UserError(f"no data folder: pass --data-dir DIR or set {DATA_DIR_ENV} to a folder in the "
                        "GLUE layout (DIR/SST-2/train.tsv ...), or use --from-hub or --train-file")
    path = Path(value).expanduser()
    if not path.is_dir():
        raise UserError(f"data folder not found: {path}")
    return path


def load_glue_split(task: TaskSpec, split: str, data_dir: str | None = None) -> Split:
    """Read ``train`` or ``dev`` of a GLUE task from a local GLUE-layout folder."""
    root = resolve_data_dir(data_dir)
    if task.glue_dir is None:
        raise UserError(f"task {task.name!r} has no GLUE folder")
    folder = root / task.glue_dir
    if not folder.is_dir():
        # Accept pointing at the task folder's parent's parent too (e.g. shared/data).
        if (root / "glue" / task.glue_dir).is_dir():
            folder = root / "glue" / task.glue_dir
        else:
            raise UserError(f"the data folder {root} has no {task.glue_dir}/ folder for task {task.name}")
    name = {"dev": "dev_matched" if task.name == "mnli" else "dev"}.get(split, split)
    path = folder / f"{name}.tsv"
    if not path.is_file():
        raise UserError(f"data file not found: {path}")
    rows = _read_delimited(path, "\t", csv.QUOTE_NONE, task.has_header, task.column_index, glue=True)
    return rows_to_split(rows, task, str(path))


def load_hub_split(task: TaskSpec, split: str) -> Split:  # pragma: no cover - needs a network
    """Read a GLUE task from the Hugging Face hub (online users; needs ``pip install augpro[hub]``)."""
    try:
        import datasets
    except ImportError:
        raise UserError("--from-hub needs the `datasets` package: pip install 'augpro[hub]'") from None
    if task.hub is None:
        raise UserError(f"task {task.name!r} has no hub dataset")
    hub_split = task.hub_dev_split if split == "dev" else split
    try:
        ds = datasets.load_dataset(*task.hub, split=hub_split)
    except Exception as exc:  # network errors come in many types
        raise UserError(f"could not load {task.hub[0]}/{task.hub[1]} from the hub: {exc}") from None
    cols = _HUB_TEXT_COLUMNS[task.name]
    texts = [tuple(str(ex[c]) for c in cols) for ex in ds]
    labels = [float(ex["label"]) if task.is_regression else int(ex["label"]) for ex in ds]
    return Split(texts, labels)


@dataclass
class TaskData:
    """A task with its train and dev splits."""

    task: TaskSpec
    train: Split
    dev: Split
    val: Split | None = None   # rows held out of train (``--val-size``), or None


def load_task_data(
    task: TaskSpec | None = None,
    *,
    data_dir: str | None = None,
    from_hub: bool = False,
    train_file: str | None = None,
    dev_file: str | None = None,
    text_columns: Sequence[str] | None = None,
    label_column: str | None = None,
    regression: bool = False,
) -> TaskData:
    """Load a task's train and dev splits from whichever source the arguments name."""
    if train_file or dev_file:
        if not (train_file and dev_file):
            raise UserError("--train-file and --dev-file go together")
        train_rows, dev_rows = read_table(train_file), read_table(dev_file)
        if task is None:
            if not text_columns or not label_column:
                raise UserError("custom files need --text-columns a[,b] and --label-column")
            if regression:
                labels = None
            else:
                if label_column not in train_rows[0]:
                    raise UserError(f"{train_file}: missing column {label_column!r}; columns present: "
                                    f"{sorted(train_rows[0])}")
                labels = tuple(sorted({str(r[label_column]).strip() for r in train_rows
                                       if not _is_empty(r.get(label_column))}))
                if len(labels) < 2:
                    raise UserError(f"{train_file}: column {label_column!r} has fewer than two distinct labels")
            task = custom_task(tuple(text_columns), label_column, labels)
        return TaskData(task, rows_to_split(train_rows, task, str(train_file)),
                        rows_to_split(dev_rows, task, str(dev_file)))
    if task is None:
        raise UserError("name a task (--task sst2) or give --train-file/--dev-file")
    if from_hub:
        return TaskData(task, load_hub_split(task, "train"), load_hub_split(task, "dev"))
    return TaskData(task, load_glue_split(task, "train", data_dir), load_glue_split(task, "dev", data_dir))


# --------------------------------------------------------------------------------------------
# Subsets
# --------------------------------------------------------------------------------------------

def stratified_order(labels: Sequence[Any], seed: int, regression: bool = False) -> list[int]:
    """A seeded order of example positions whose every prefix is label-stratified.

    Each class is shuffled; the j-th member of a class of size n gets the key ``(j + u) / n``
    (``u`` one uniform offset per class) and all examples are sorted by key. A prefix of any
    length therefore holds each class in proportion (within one example), and the prefix of
    length 500 lies inside the prefix of length 1000: subsets are nested by construction.
    Regression targets are stratified by quintile.
    """
    rng = np.random.default_rng(seed)
    values = np.asarray(labels, dtype=float if regression else object)
    if regression:
        edges = np.quantile(values, [0.2, 0.4, 0.6, 0.8])
        strata = np.searchsorted(edges, values, side="right")
    else:
        strata = np.asarray([int(v) for v in labels])
    keys = np.empty(len(labels))
    for s in np.unique(strata):
        members = np.flatnonzero(strata == s)
        members = members[rng.permutation(len(members))]
        keys[members] = (np.arange(len(members)) + rng.uniform()) / len(members)
    tiebreak = rng.permutation(len(labels))
    return list(np.lexsort((tiebreak, keys)))


def subset(split: Split, size: int | None, seed: int, regression: bool = False) -> Split:
    """A label-stratified, seeded, nested subset of ``size`` examples (all of them if ``None``)."""
    if size is None:
        return split
    if size <= 0:
        raise UserError(f"--train-size must be positive, got {size}")
    if size > len(split):
        raise UserError(f"--train-size {size} is larger than the training data ({len(split)} rows)")
    order = stratified_order(split.labels, seed, regression)[:size]
    return split.select(sorted(order))


def hold_out(split: Split, size: int | None, seed: int, regression: bool = False) -> tuple[Split, Split | None]:
    """``(rest, held)``: a label-stratified, seeded set of ``size`` rows taken out of ``split``.

    The held rows are a validation split carved from the training data (tune on it, keep the dev
    set for the final number); training subsets are then drawn from ``rest``, so they never
    overlap it. With a fixed ``seed`` the held rows are the same whatever the run's seed.
    """
    if size is None:
        return split, None
    if size >= len(split):
        raise UserError(f"--val-size {size} leaves no training rows (the training data has {len(split)})")
    order = stratified_order(split.labels, seed, regression)
    held = set(order[:size])
    return (split.select([i for i in range(len(split)) if i not in held]),
            split.select(sorted(held)))


# --------------------------------------------------------------------------------------------
# Tokenization and collation
# --------------------------------------------------------------------------------------------

class EncodedDataset(torch.utils.data.Dataset):
    """Tokenized examples (no padding) with labels and row positions.

    Items are dicts of lists/scalars: ``input_ids``, ``attention_mask``, ``token_type_ids``
    (where the tokenizer makes them), ``labels``, ``idx`` (position in this dataset) and, once
    attached, ``teacher_logits``.
    """

    def __init__(self, encodings: dict[str, list], labels: Sequence[Any]):
        self.encodings = encodings
        self.labels = list(labels)
        self.extra: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = {k: v[i] for k, v in self.encodings.items()}
        item["labels"] = self.labels[i]
        item["idx"] = i
        for k, v in self.extra.items():
            item[k] = v[i]
        return item

    def add_encodings(self, prefix: str, encodings: dict[str, list]) -> None:
        """Add a second tokenization of the same examples under ``prefix`` + key (the teacher's
        own ``input_ids`` etc. when teacher and student tokenize differently)."""
        for key, rows in encodings.items():
            if len(rows) != len(self):
                raise ValueError(f"{prefix}{key}: {len(rows)} rows for {len(self)} examples")
            self.encodings[prefix + key] = rows

    def attach(self, name: str, values: torch.Tensor) -> None:
        """Attach a per-example tensor (e.g. cached teacher logits) returned with every item."""
        if len(values) != len(self):
            raise ValueError(f"{name}: {len(values)} rows for {len(self)} examples")
        self.extra[name] = values


def encode(split: Split, tokenizer, max_length: int = 128) -> EncodedDataset:
    """Tokenize a split (truncation to ``max_length``, no padding: batches pad dynamically)."""
    columns = list(zip(*split.texts)) if len(split) else [[]]
    enc = tokenizer(*[list(c) for c in columns], truncation=True, max_length=max_length)
    keep = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc}
    return EncodedDataset(keep, split.labels)


#: prefix of a second tokenization's columns (see :meth:`EncodedDataset.add_encodings`)
TEACHER_PREFIX = "teacher_"


def pad_batch(features: list[dict[str, Any]], pad_token_id: int = 0, regression: bool = False,
              teacher_pad_token_id: int | None = None) -> dict[str, torch.Tensor]:
    """Collate tokenized items into a batch padded to its own longest sequence.

    A second tokenization (``teacher_input_ids`` ...) is padded to its own longest sequence with
    ``teacher_pad_token_id`` (default: ``pad_token_id``).
    """
    batch: dict[str, torch.Tensor] = {}
    t_pad = pad_token_id if teacher_pad_token_id is None else teacher_pad_token_id
    for prefix, pad_id in (("", pad_token_id), (TEACHER_PREFIX, t_pad)):
        if prefix + "input_ids" not in features[0]:
            continue
        length = max(len(f[prefix + "input_ids"]) for f in features)
        for key, pad in (("input_ids", pad_id), ("attention_mask", 0), ("token_type_ids", 0)):
            key = prefix + key
            if key in features[0]:
                batch[key] = torch.tensor([list(f[key]) + [pad] * (length - len(f[key])) for f in features],
                                          dtype=torch.long)
    labels = [f["labels"] for f in features]
    batch["labels"] = torch.tensor(labels, dtype=torch.float if regression else torch.long)
    if "idx" in features[0]:
        batch["idx"] = torch.tensor([f["idx"] for f in features], dtype=torch.long)
    for key in features[0]:
        if key not in batch and isinstance(features[0][key], torch.Tensor):
            batch[key] = torch.stack([f[key] for f in features])
    return batch


class Collator:
    """Picklable collate function (dataloader workers, accelerate) around :func:`pad_batch`."""

    def __init__(self, pad_token_id: int, regression: bool, teacher_pad_token_id: int | None = None):
        self.pad_token_id = pad_token_id
        self.regression = regression
        self.teacher_pad_token_id = teacher_pad_token_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return pad_batch(features, self.pad_token_id, self.regression, self.teacher_pad_token_id)
