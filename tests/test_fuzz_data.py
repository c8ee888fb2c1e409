"""Property tests of data loading: any file either loads into a consistent split or raises UserError.

Random CSV/TSV/JSONL contents (arbitrary unicode, quotes, tabs, newlines, empty cells, ragged
rows, random bytes, GLUE-layout folders) go through the same functions the CLI uses. The
properties: loading never raises anything but :class:`~augpro.errors.UserError`; whatever loads
is consistent (one text tuple and one label per row, non-blank strings, labels in range, finite
scores); well-formed files load and round-trip exactly; and every loaded split tokenizes and
goes through a token augmenter.

``AUGPRO_FUZZ_EXAMPLES`` sets the examples per property (default 60); ``tests/fuzz_campaign.py``
runs the same properties with thousands of examples.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augpro.data import Split, TaskData, load_task_data, read_table
from augpro.errors import UserError
from augpro.tasks import TaskSpec, get_task

EXAMPLES = int(os.environ.get("AUGPRO_FUZZ_EXAMPLES", "60"))
RANDOM = os.environ.get("AUGPRO_FUZZ_RANDOM") == "1"  # the campaign draws fresh examples; the suite is repeatable
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

#: calls of each property (the campaign reports them as "examples run")
CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1


# --------------------------------------------------------------------------- strategies

_nasty = st.sampled_from(["", " ", "\t", "\n", "\r", "\r\n", '"', '""', "'", ",", ";", "|", "\\", "\x00", "\x1b[31m",
                          "\ufeff", "\u2028", "\x85", "NaN", "nan", "inf", "-0", "1e999", "None", "null", "[", "{",
                          "😀", "e\u0301", "\u200b", "ﬁ", "İ", "\U0010ffff"])
_any_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40)
_cell = st.one_of(_any_text, _nasty, st.lists(st.one_of(_any_text, _nasty), max_size=4).map("".join))
_label = st.one_of(st.sampled_from(["pos", "neg", "0", "1", " pos ", "", "maybe"]), _cell)
_name = st.sampled_from(["text", "label", "premise", "hyp", "id", "", " text", "Text"])
_ext = st.sampled_from([".csv", ".tsv", ".txt", ".jsonl", ".json"])


@st.composite
def tables(draw, text_columns=("text",), label_column="label"):
    """A header (usually the right one) and rows, some of them ragged."""
    cols = [*text_columns, label_column]
    header = draw(st.one_of(st.just(cols), st.permutations(cols).map(list),
                            st.lists(_name, min_size=1, max_size=4), st.just([*cols, "id"])))
    n = draw(st.integers(0, 8))
    rows = []
    for _ in range(n):
        width = draw(st.one_of(st.just(len(header)), st.integers(0, len(header) + 2)))
        rows.append([draw(_label if name == label_column else _cell) for name in header[:width]]
                    + [draw(_cell) for _ in range(max(0, width - len(header)))])
    return header, rows


@st.composite
def well_formed(draw):
    """A correct text,label table: non-blank cells, at least two distinct labels."""
    text = st.one_of(_cell, _any_text).filter(lambda c: c.strip())
    label = st.one_of(st.sampled_from(["pos", "neg", " pos", "1"]), _cell.filter(lambda c: c.strip()))
    rows = [[draw(text), "pos"], [draw(text), "neg"]]
    rows += [[draw(text), draw(label)] for _ in range(draw(st.integers(0, 6)))]
    return ["text", "label"], draw(st.permutations(rows))


def _write_delimited(header, rows, delimiter: str, quoting: int) -> bytes:
    buf = io.StringIO()
    # CSV: CRLF line ends, so cells holding CR or LF are quoted (with "\n" a bare CR would end the row)
    writer = csv.writer(buf, delimiter=delimiter, quoting=quoting, escapechar="\\" if quoting == csv.QUOTE_NONE
                        else None, lineterminator="\n" if quoting == csv.QUOTE_NONE else "\r\n")
    for row in [header, *rows]:
        try:
            writer.writerow(row)
        except csv.Error:  # QUOTE_NONE cannot write some cells; write them raw (a malformed file)
            buf.write(delimiter.join(row) + "\n")
    return buf.getvalue().encode("utf-8")


def _write_jsonl(header, rows) -> bytes:
    lines = []
    for row in rows:
        lines.append(json.dumps(dict(zip(header, row)), ensure_ascii=False))
    return ("\n".join(lines) + "\n").encode("utf-8")


_json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), _cell),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_name, inner, max_size=3),
                           max_leaves=6)


# --------------------------------------------------------------------------- checks


def check_split(split: Split, task: TaskSpec) -> None:
    """The invariants every loaded split keeps."""
    assert len(split.texts) == len(split.labels) == len(split.ids) > 0
    assert split.ids == list(range(len(split)))
    for text in split.texts:
        assert isinstance(text, tuple) and len(text) == len(task.text_columns)
        assert all(isinstance(t, str) and t.strip() for t in text)
    if task.is_regression:
        assert all(isinstance(y, float) and math.isfinite(y) for y in split.labels)
    else:
        assert all(isinstance(y, int) and 0 <= y < task.num_labels for y in split.labels)


def load_files(train: bytes, dev: bytes, ext: str, text_columns=("text",), label_column="label",
               regression: bool = False) -> TaskData | None:
    """Write both files to a fresh folder and load them; ``None`` when loading raised UserError."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, content in (("train", train), ("dev", dev)):
            path = Path(tmp) / f"{name}{ext}"
            path.write_bytes(content)
            paths.append(str(path))
        try:
            data = load_task_data(None, train_file=paths[0], dev_file=paths[1], text_columns=list(text_columns),
                                  label_column=label_column, regression=regression)
        except UserError as exc:
            assert str(exc).strip()
            return None
    check_split(data.train, data.task)
    check_split(data.dev, data.task)
    return data


def _good_csv_rows(rows, width):
    return all(len(r) == width and all(c.strip() for c in r) for r in rows)


def _must_reject_csv(header, rows) -> bool:
    """Files the loader must refuse: a repeated column name, or a kept row with a blank cell or a wrong width."""
    if len(set(header)) < len(header) and rows:
        return True
    kept = [r for r in rows if any(c.strip() for c in r)]  # all-blank rows are skipped like blank lines
    if header == ["text", "label"]:
        return any(len(r) != 2 or not all(c.strip() for c in r) for r in kept)
    return False


# --------------------------------------------------------------------------- properties


@FUZZ
@given(table=st.one_of(tables(), well_formed()), dev=st.one_of(st.none(), tables(), well_formed()),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
def test_fuzz_csv(table, dev, quoting):
    """Random CSV files load consistently or raise UserError; clean files round-trip exactly."""
    _count("csv")
    header, rows = table
    dev = dev or table  # None: the dev file is the training file (every dev label is known)
    data = load_files(_write_delimited(header, rows, ",", quoting), _write_delimited(*dev, ",", quoting), ".csv")
    if _must_reject_csv(header, rows) or _must_reject_csv(*dev):
        assert data is None, "a malformed CSV (blank cell, ragged row or repeated column) was accepted"
    clean = (header == ["text", "label"] and rows and _good_csv_rows(rows, 2) and dev[0] == header and dev[1]
             and _good_csv_rows(dev[1], 2) and len({r[1].strip() for r in rows}) >= 2
             and {r[1].strip() for r in dev[1]} <= {r[1].strip() for r in rows}
             and not any(c.startswith("\ufeff") for c in header))
    if clean:
        assert data is not None, "a well-formed CSV was rejected"
        assert [t[0] for t in data.train.texts] == [r[0] for r in rows]
        names = data.task.labels
        assert [names[y] for y in data.train.labels] == [r[1].strip() for r in rows]


@FUZZ
@given(table=tables(("sentence1", "sentence2"), "score"), regression=st.booleans())
def test_fuzz_tsv_pairs(table, regression):
    """Random TSV sentence pairs (QUOTE_NONE, like GLUE): tabs and newlines in cells break rows, not the loader."""
    _count("tsv")
    header, rows = table
    content = _write_delimited(header, rows, "\t", csv.QUOTE_NONE)
    data = load_files(content, content, ".tsv", ("sentence1", "sentence2"), "score", regression)
    if data is not None and regression:
        assert data.task.is_regression


@FUZZ
@given(rows=st.lists(st.dictionaries(_name, _json_value, max_size=4), max_size=6),
       garbage=st.lists(st.one_of(_cell, st.sampled_from(["[" * 5000, "{", "[1, 2]", "null", "\"s\"", "{\"text\": "])),
                        max_size=2),
       where=st.integers(0, 6))
def test_fuzz_jsonl(rows, garbage, where):
    """JSON lines with values of any JSON type, plus garbage lines."""
    _count("jsonl")
    lines = [json.dumps(r, ensure_ascii=False) for r in rows]
    for g in garbage:
        lines.insert(min(where, len(lines)), g.replace("\n", " ").replace("\r", " "))
    content = ("\n".join(lines) + "\n").encode("utf-8")
    data = load_files(content, content, ".jsonl")

    def text_ok(v):
        return isinstance(v, (str, int, float)) and not isinstance(v, bool) and str(v).strip()

    def label_ok(v):
        return v is not None and str(v).strip()

    if any(not (text_ok(r.get("text")) and label_ok(r.get("label"))) for r in rows):
        assert data is None, "a JSONL row with a missing, blank or non-text value was accepted"
    elif rows and not garbage and len({str(r["label"]).strip() for r in rows}) >= 2:
        assert data is not None, "well-formed JSONL was rejected"
        assert [t[0] for t in data.train.texts] == [str(r["text"]) for r in rows]


@FUZZ
@given(train=st.binary(max_size=300), dev=st.binary(max_size=300), ext=_ext,
       prefix=st.sampled_from([b"", b"text,label\n", b"text\tlabel\n", b"\xef\xbb\xbf",
                               b'{"text": "a", "label": "b"}\n']))
def test_fuzz_random_bytes(train, dev, ext, prefix):
    """Arbitrary bytes (invalid UTF-8, NUL, lone CR) under any supported file name."""
    _count("bytes")
    load_files(prefix + train, prefix + dev, ext)


@FUZZ
@given(path_text=st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00/"),
                         max_size=30),
       ext=st.sampled_from(["", ".csv", ".xlsx", ".jsonl", ".tsv/"]))
def test_fuzz_read_table_paths(path_text, ext):
    """Odd file names (missing, folders, unknown types, shell syntax) are UserErrors."""
    _count("paths")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            read_table(Path(tmp) / (path_text + ext))
        except UserError:
            pass
        else:
            raise AssertionError("a missing file loaded")


def _glue_folder(tmp: str, task: TaskSpec, train: bytes, dev: bytes) -> str:
    folder = Path(tmp) / task.glue_dir
    folder.mkdir()
    (folder / "train.tsv").write_bytes(train)
    (folder / "dev.tsv").write_bytes(dev)
    return tmp


_STSB_COLS = ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
              "score"]


@st.composite
def glue_files(draw):
    task = get_task(draw(st.sampled_from(["sst2", "stsb", "cola"])))
    if task.name == "sst2":
        header = ["sentence", "label"]
        label = st.one_of(st.sampled_from(["0", "1"]), _cell)
    elif task.name == "stsb":
        header = _STSB_COLS
        label = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(str),
                          st.sampled_from(["", "nan", "5.000"]),
                          _cell)
    else:
        header = None
        label = st.one_of(st.sampled_from(["0", "1"]), _cell)
    width = len(header) if header else 4
    label_pos = header.index(task.label_column) if header else 1
    rows = []
    for _ in range(draw(st.integers(0, 6))):
        w = draw(st.one_of(st.just(width), st.integers(0, width + 2)))
        rows.append([draw(label) if i == label_pos else draw(_cell) for i in range(w)])
    head = [header] if header and draw(st.integers(0, 9)) else []
    return task, _write_delimited_rows([*head, *rows])


def _write_delimited_rows(rows) -> bytes:
    return "".join("\t".join(r) + "\n" for r in rows).encode("utf-8")


@FUZZ
@given(files=glue_files(), dev_same=st.booleans())
def test_fuzz_glue_folder(files, dev_same):
    """GLUE-layout folders (SST-2 with header, STS-B scores, CoLA without header) with random rows."""
    _count("glue")
    task, content = files
    dev = content
    if not dev_same and task.name == "sst2":
        dev = _write_delimited_rows([["sentence", "label"], ["fine", "1"]])
    with tempfile.TemporaryDirectory() as tmp:
        try:
            data = load_task_data(task, data_dir=_glue_folder(tmp, task, content, dev))
        except UserError:
            return
    check_split(data.train, task)
    check_split(data.dev, task)


@pytest.fixture(scope="module")
def mask_pipeline():
    from augpro.augment import build_augmenter
    from augpro.models import load_tokenizer

    return load_tokenizer(None), build_augmenter


@settings(max_examples=max(10, EXAMPLES // 3), deadline=None, database=None, derandomize=not RANDOM,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
@given(table=well_formed(), method=st.sampled_from(["mask", "random"]), degree=st.sampled_from([0.0, 0.3, 1.0]),
       max_length=st.sampled_from([8, 32, 128]))
def test_fuzz_loaded_data_tokenizes_and_augments(table, method, degree, max_length, mask_pipeline):
    """Whatever loads also encodes (truncated to max_length) and goes through a token augmenter."""
    import torch

    from augpro.augment.base import PrepareContext
    from augpro.data import encode

    _count("pipeline")
    header, rows = table
    content = _write_delimited(header, rows, ",", csv.QUOTE_MINIMAL)
    data = load_files(content, content, ".csv")
    assert data is not None, "a well-formed CSV was rejected"
    tokenizer, build_augmenter = mask_pipeline
    ds = encode(data.train, tokenizer, max_length)
    assert len(ds) == len(data.train)
    assert all(2 <= len(ids) <= max_length for ids in ds.encodings["input_ids"])
    aug = build_augmenter(method, degree=degree)
    aug.prepare(PrepareContext(texts=data.train.texts, input_ids=ds.encodings["input_ids"],
                               token_type_ids=ds.encodings.get("token_type_ids"), tokenizer=tokenizer,
                               max_length=max_length, copies=1, generator=torch.Generator().manual_seed(0),
                               show_progress=False))
    view = aug.pool[0]
    assert [len(x) for x in view.input_ids] == [len(x) for x in ds.encodings["input_ids"]]
    assert (view.changed <= view.eligible).all()
