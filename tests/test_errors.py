"""Bad input through the real CLI: one row of docs/errors.md per case.

Every error row runs the ``augpro`` command in a fresh process on small files written to a
fresh folder and checks: the exit code, the message on the last stderr line (one line,
``augpro: error: ...``), no traceback, and that nothing was written (the row's folder holds
exactly the files the test put there, so no ``--output-dir``/``--output`` and no partial file).
Accepted rows (odd but valid input) check that the command succeeds.

How the process is started: importing torch + transformers costs ~10 s per process on a busy
2-core machine, so by default each row runs ``augpro.cli.main(argv)`` -- the function
``python -m augpro.cli`` calls -- in a process forked from a ``multiprocessing`` forkserver that
has imported augpro once (fresh process, own stdout/stderr file descriptors, own exit code;
nothing from earlier rows or from pytest). ``test_rows_through_python_m`` runs a sample of rows
as ``[sys.executable, "-m", "augpro.cli", ...]`` subprocesses to show both give the same result;
``AUGPRO_ERRORS_SUBPROCESS=1`` runs every row that way (about 10 minutes here).

All failures happen before any training. The security tests (safetensors only,
trust_remote_code, no eval/pickle) close the file.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest

from augpro.errors import UserError

SRC = Path(__file__).resolve().parents[1] / "src" / "augpro"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
ALL_SUBPROCESS = os.environ.get("AUGPRO_ERRORS_SUBPROCESS") == "1"
CHILD_ENV = {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
             "OMP_WAIT_POLICY": "PASSIVE"}

# --------------------------------------------------------------------------- input files

SST2_OK = "sentence\tlabel\ngood film\t1\nbad film\t0\nfine acting\t1\n"
STSB_HEADER = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n"


def stsb_row(i: int, score: str) -> str:
    return f"{i}\tmain\tMSRvid\t2012\t{i:04d}\tnone\tnone\tA man sings.\tA man is singing.\t{score}\n"


STSB_OK = STSB_HEADER + stsb_row(0, "4.2") + stsb_row(1, "1.0")
CSV_OK = "text,label\nhello there,pos\nbad movie,neg\n"
JSONL_OK = '{"text": "hello there", "label": "x"}\n{"text": "bad movie", "label": "y"}\n'
CUSTOM = ["--train-file", "{tmp}/train.csv", "--dev-file", "{tmp}/dev.csv", "--text-columns", "text",
          "--label-column", "label"]
FINETUNE = ["finetune", "--output-dir", "{out}", "--quiet", "--no-checkpoints", "--max-steps", "1"]
GLUE_FT = [*FINETUNE, "--data-dir", "{tmp}/glue"]
AUGMENT = ["augment", "--method", "mask", "--degree", "0.3", "--output", "{tmp}/aug.jsonl"]


def glue(task_dir: str = "SST-2", train: str | bytes = SST2_OK, dev: str | bytes = SST2_OK) -> dict:
    return {f"glue/{task_dir}/train.tsv": train, f"glue/{task_dir}/dev.tsv": dev}


def custom(train: str | bytes, dev: str | bytes | None = None, ext: str = "csv") -> dict:
    if dev is None:
        dev = JSONL_OK if ext == "jsonl" else CSV_OK
    return {f"train.{ext}": train, f"dev.{ext}": dev}


def jsonl(*objs) -> str:
    return "".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs)


class Row(NamedTuple):
    id: str
    input: str            # what the user gave (the docs table's first column)
    files: dict           # path (relative to the row's folder) -> contents
    args: list            # CLI arguments; {tmp}, {out}, {teacher} are filled in
    message: str          # expected on the last stderr line (or in stdout for accepted rows)
    code: int = 2
    creates: str | None = None  # accepted rows: the file they write


ROWS = [
    # ---- GLUE-layout folders (--data-dir) ----
    Row("glue-malformed-row", "GLUE `SST-2/train.tsv` with a row of 3 tab-separated fields",
        glue(train="sentence\tlabel\ngood film\t1\nbad\tfilm\t0\n"), [*GLUE_FT, "--task", "sst2"],
        "SST-2/train.tsv: line 3 has 3 fields, expected 2 (malformed row or wrong delimiter)"),
    Row("glue-wrong-delimiter", "GLUE `SST-2/train.tsv` written with commas",
        glue(train="sentence,label\ngood film,1\nbad film,0\n"), [*GLUE_FT, "--task", "sst2"],
        "SST-2/train.tsv: line 1 has one column with a tab delimiter but holds commas (wrong delimiter); "
        "GLUE files are tab-separated"),
    Row("glue-missing-field", "GLUE `CoLA/train.tsv` (no header, 4 columns) with a 3-field row",
        glue("CoLA", train="gj04\t1\t\tA fine sentence.\ngj04\t0\tA bad sentence.\n",
             dev="gj04\t1\t\tA fine sentence.\n"), [*GLUE_FT, "--task", "cola"],
        "CoLA/train.tsv: line 2 has 3 fields, expected 4 (malformed row or wrong delimiter)"),
    Row("glue-missing-column", "GLUE `SST-2/train.tsv` whose header lacks `label`",
        glue(train="sentence\tscore\ngood film\t1\nbad film\t0\n"), [*GLUE_FT, "--task", "sst2"],
        "SST-2/train.tsv: missing column 'label'; columns present: ['score', 'sentence']"),
    Row("glue-unknown-label", "GLUE SST-2 label `2`",
        glue(train="sentence\tlabel\ngood film\t1\nbad film\t2\n"), [*GLUE_FT, "--task", "sst2"],
        "SST-2/train.tsv line 3: unknown label '2'; expected one of ['0', '1']"),
    Row("glue-empty-label", "GLUE SST-2 empty label cell",
        glue(train="sentence\tlabel\ngood film\t1\nbad film\t\n"), [*GLUE_FT, "--task", "sst2"],
        "SST-2/train.tsv line 3: empty label in column 'label'"),
    Row("stsb-nan-score", "GLUE STS-B score `nan`",
        glue("STS-B", train=STSB_OK + stsb_row(2, "nan"), dev=STSB_OK), [*GLUE_FT, "--task", "stsb"],
        "STS-B/train.tsv line 4: score 'nan' is not a finite number"),
    Row("stsb-empty-score", "GLUE STS-B empty score",
        glue("STS-B", train=STSB_OK, dev=STSB_OK + stsb_row(2, "")), [*GLUE_FT, "--task", "stsb"],
        "STS-B/dev.tsv line 4: empty score in column 'score'"),
    Row("stsb-text-score", "GLUE STS-B score `high`",
        glue("STS-B", train=STSB_OK + stsb_row(2, "high"), dev=STSB_OK), [*GLUE_FT, "--task", "stsb"],
        "STS-B/train.tsv line 4: score 'high' is not a number"),
    Row("glue-empty-text", "GLUE SST-2 sentence of spaces only",
        glue(train="sentence\tlabel\ngood film\t1\n   \t0\n"), [*GLUE_FT, "--task", "sst2"],
        "SST-2/train.tsv line 3: empty text in column 'sentence'"),
    Row("glue-non-utf8", "GLUE SST-2 with Latin-1 bytes (`caf\\xe9`)",
        glue(train=b"sentence\tlabel\ncaf\xe9 film\t1\nbad film\t0\n"), [*GLUE_FT, "--task", "sst2"],
        "SST-2/train.tsv: not valid UTF-8 text (invalid continuation byte at byte 18, line 2)"),
    Row("glue-no-task-folder", "`--data-dir` without the task's folder (`--task rte`, only SST-2/ there)",
        glue(), [*GLUE_FT, "--task", "rte"], "has no RTE/ folder for task rte"),
    Row("glue-no-dev-file", "task folder without `dev.tsv`",
        {"glue/SST-2/train.tsv": SST2_OK}, [*GLUE_FT, "--task", "sst2"], "data file not found: "),
    Row("data-dir-missing", "`--data-dir` that does not exist", {},
        [*FINETUNE, "--data-dir", "{tmp}/nowhere", "--task", "sst2"], "data folder not found: "),
    Row("unknown-task", "`--task imdb`", glue(), [*GLUE_FT, "--task", "imdb"], "unknown task 'imdb'"),
    Row("train-size-too-large", "`--train-size 5` on a 3-row file", glue(),
        [*GLUE_FT, "--task", "sst2", "--train-size", "5"], "--train-size 5 is larger than the training data (3 rows)"),
    # ---- custom CSV/TSV/JSONL files ----
    Row("csv-extra-field", "CSV row with more fields than the header",
        custom("text,label\nhello,pos\nbad,neg,extra\n"), [*FINETUNE, *CUSTOM],
        "train.csv: line 3 has 3 fields, expected 2 (malformed row or wrong delimiter)"),
    Row("csv-missing-field", "CSV row with fewer fields than the header",
        custom("text,label\nhello,pos\nbad\n"), [*FINETUNE, *CUSTOM],
        "train.csv: line 3 has 1 field, expected 2 (malformed row or wrong delimiter)"),
    Row("csv-unclosed-quote", "CSV with an unclosed quote",
        custom('text,label\n"hello,pos\nbad,neg\n'), [*FINETUNE, *CUSTOM],
        "train.csv: line 2 has 1 field, expected 2 (an unclosed quote?)"),
    Row("csv-missing-column", "CSV without the `--label-column`",
        custom("text\nhello\nbad\n"), [*FINETUNE, *CUSTOM],
        "train.csv: missing column 'label'; columns present: ['text']"),
    Row("csv-semicolons", "`.csv` file separated by semicolons",
        custom("text;label\nhello;pos\nbad;neg\n"), [*FINETUNE, *CUSTOM],
        "train.csv: line 1 has one column with a comma delimiter but holds semicolons (wrong delimiter); "
        "use commas (.csv) or tabs (.tsv)"),
    Row("tsv-with-commas", "`.tsv` file separated by commas",
        custom(CSV_OK, CSV_OK, ext="tsv"),
        [*FINETUNE, *[a.replace(".csv", ".tsv") for a in CUSTOM]],
        "train.tsv: line 1 has one column with a tab delimiter but holds commas (wrong delimiter); "
        "name a comma-separated file .csv"),
    Row("csv-duplicate-column", "CSV header naming a column twice",
        custom("text,text,label\nhello,x,pos\nbad,y,neg\n"), [*FINETUNE, *CUSTOM],
        "train.csv: column name 'text' appears more than once in the header"),
    Row("csv-unknown-label", "dev label not among the training labels",
        custom(CSV_OK, "text,label\nok,pos\nhmm,maybe\n"), [*FINETUNE, *CUSTOM],
        "dev.csv line 3: unknown label 'maybe'; expected one of ['neg', 'pos']"),
    Row("csv-empty-label", "CSV empty label cell",
        custom("text,label\nhello,pos\nbad,\nok,neg\n"), [*FINETUNE, *CUSTOM],
        "train.csv line 3: empty label in column 'label'"),
    Row("csv-one-label", "training file with a single distinct label",
        custom("text,label\nhello,pos\nbad,pos\n"), [*FINETUNE, *CUSTOM],
        "train.csv: column 'label' has fewer than two distinct labels"),
    Row("csv-empty-text", "CSV empty text cell",
        custom('text,label\nhello,pos\n"",neg\n'), [*FINETUNE, *CUSTOM],
        "train.csv line 3: empty text in column 'text'"),
    Row("csv-header-only", "CSV with a header and no rows",
        custom("text,label\n"), [*FINETUNE, *CUSTOM], "train.csv: the file has no data rows"),
    Row("csv-non-utf8", "CSV with Latin-1 bytes",
        custom(b"text,label\ncaf\xe9 nice,pos\nbad,neg\n"), [*FINETUNE, *CUSTOM],
        "train.csv: not valid UTF-8 text (invalid continuation byte at byte 14, line 2)"),
    Row("regression-nan", "custom `--regression` score `NaN`",
        custom("text,label\nhello,0.5\nbad,NaN\n", "text,label\nok,1\n"), [*FINETUNE, *CUSTOM, "--regression"],
        "train.csv line 3: score 'NaN' is not a finite number"),
    Row("jsonl-bad-json", "JSONL line that is not JSON",
        custom(jsonl({"text": "a", "label": "x"}, "{text: b}"), ext="jsonl"),
        [*FINETUNE, *[a.replace(".csv", ".jsonl") for a in CUSTOM]], "train.jsonl: line 2 is not valid JSON"),
    Row("jsonl-not-object", "JSONL line holding an array",
        custom(jsonl(["a", "x"]), ext="jsonl"),
        [*FINETUNE, *[a.replace(".csv", ".jsonl") for a in CUSTOM]], "train.jsonl: line 1 is not a JSON object"),
    Row("jsonl-list-text", "JSONL text that is a list",
        custom(jsonl({"text": ["a"], "label": "x"}, {"text": "b", "label": "y"}), ext="jsonl"),
        [*FINETUNE, *[a.replace(".csv", ".jsonl") for a in CUSTOM]],
        "train.jsonl line 1: column 'text' holds a JSON list, not text"),
    Row("jsonl-null-label", "JSONL `\"label\": null`",
        custom(jsonl({"text": "a", "label": None}, {"text": "b", "label": "x"}, {"text": "c", "label": "y"}),
               ext="jsonl"),
        [*FINETUNE, *[a.replace(".csv", ".jsonl") for a in CUSTOM]],
        "train.jsonl line 1: empty label in column 'label'"),
    Row("jsonl-deep-nesting", "JSONL line of 100,000 `[`",
        custom("[" * 100_000 + "\n", ext="jsonl"),
        [*FINETUNE, *[a.replace(".csv", ".jsonl") for a in CUSTOM]], "train.jsonl: line 1 is nested too deeply"),
    Row("unknown-file-type", "`--train-file data.xlsx`", {"data.xlsx": "x", "dev.csv": CSV_OK},
        [*FINETUNE, "--train-file", "{tmp}/data.xlsx", "--dev-file", "{tmp}/dev.csv",
         "--text-columns", "text", "--label-column", "label"], "unknown file type '.xlsx'; use .csv, .tsv or .jsonl"),
    Row("train-file-missing", "`--train-file` that does not exist", {"dev.csv": CSV_OK},
        [*FINETUNE, *CUSTOM], "data file not found: "),
    Row("train-without-dev", "`--train-file` without `--dev-file`", custom(CSV_OK),
        [*FINETUNE, "--train-file", "{tmp}/train.csv", "--text-columns", "text", "--label-column", "label"],
        "--train-file and --dev-file go together"),
    Row("three-text-columns", "`--text-columns a,b,c`", custom(CSV_OK),
        [*FINETUNE, *CUSTOM[:4], "--text-columns", "a,b,c", "--label-column", "label"],
        "--text-columns takes one column or two (a sentence pair), comma-separated"),
    # ---- output locations ----
    Row("output-under-a-file", "`--output-dir` below a regular file (fails for root too)",
        {**glue(), "afile.txt": "x"}, [*GLUE_FT[:1], "--output-dir", "{tmp}/afile.txt/sub", *GLUE_FT[3:],
                                       "--task", "sst2"],
        "afile.txt/sub: cannot create it, {tmp}/afile.txt is a file, not a folder"),
    Row("output-in-proc", "`--output-dir /proc/augpro-out` (not writable, even for root)", glue(),
        [*GLUE_FT[:1], "--output-dir", "/proc/augpro-out", *GLUE_FT[3:], "--task", "sst2"],
        "--output-dir /proc/augpro-out: cannot write to /proc"),
    Row("augment-output-under-a-file", "`augment --output` below a regular file",
        {**custom(CSV_OK), "afile.txt": "x"},
        [*AUGMENT[:-1], "{tmp}/afile.txt/aug.jsonl", *CUSTOM],
        "--output folder {tmp}/afile.txt does not exist or is not a folder"),
    # ---- models ----
    Row("teacher-label-count", "2-label teacher for STS-B (1 output)", glue("STS-B", STSB_OK, STSB_OK),
        ["distill", "--teacher", "{teacher}", "--output-dir", "{out}", "--data-dir", "{tmp}/glue", "--task", "stsb"],
        "teacher {teacher} has 2 labels but task stsb needs 1"),
    Row("teacher-pickle", "`--teacher` folder with `pytorch_model.bin` and no safetensors", {**glue(), **{
        "pickled/config.json": "TEACHER_CONFIG", "pickled/pytorch_model.bin": "PICKLE"}},
        ["distill", "--teacher", "{tmp}/pickled", "--output-dir", "{out}", "--data-dir", "{tmp}/glue"],
        "holds pickle weights (pytorch_model.bin); augpro loads only safetensors"),
    Row("model-pickle", "`teacher --model` folder with pickle weights only", {**glue(), **{
        "pickled/config.json": "TEACHER_CONFIG", "pickled/pytorch_model.bin": "PICKLE"}},
        ["teacher", "--model", "{tmp}/pickled", "--output-dir", "{out}", "--data-dir", "{tmp}/glue"],
        "holds pickle weights (pytorch_model.bin); augpro loads only safetensors"),
    Row("evaluate-pickle", "`evaluate --model` folder with pickle weights only", {**glue(), **{
        "pickled/config.json": "TEACHER_CONFIG", "pickled/pytorch_model.bin": "PICKLE"}},
        ["evaluate", "--model", "{tmp}/pickled", "--data-dir", "{tmp}/glue", "--task", "sst2"],
        "holds pickle weights (pytorch_model.bin); augpro loads only safetensors"),
    Row("teacher-missing", "`--teacher` folder that does not exist", glue(),
        ["distill", "--teacher", "{tmp}/no-teacher", "--output-dir", "{out}", "--data-dir", "{tmp}/glue"],
        "model folder not found: {tmp}/no-teacher"),
    Row("teacher-corrupt-safetensors", "`--teacher` whose model.safetensors is garbage",
        {**glue(), "broken/config.json": "TEACHER_CONFIG", "broken/model.safetensors": b"garbage" * 20},
        ["distill", "--teacher", "{tmp}/broken", "--output-dir", "{out}", "--data-dir", "{tmp}/glue"],
        "cannot load model weights from {tmp}/broken: Error while deserializing header"),
    Row("teacher-not-classifier", "`--teacher minilm-l6` (a base model, no classifier head)", glue(),
        ["distill", "--teacher", "minilm-l6", "--output-dir", "{out}", "--data-dir", "{tmp}/glue"],
        "minilm-l6 is not a fine-tuned sequence classifier; train one with `augpro teacher`"),
    Row("remote-code-refused", "`--teacher` whose config needs custom code, without `--trust-remote-code`",
        {**glue(), "custom/config.json": "CUSTOM_CONFIG", "custom/model.safetensors": "TEACHER_WEIGHTS",
         "custom/configuration_evil.py": "EVIL_CODE"},
        ["distill", "--teacher", "{tmp}/custom", "--output-dir", "{out}", "--data-dir", "{tmp}/glue"],
        "custom model code runs only with --trust-remote-code"),
    # ---- flags ----
    Row("degree-above-1", "`--degree 1.5`", glue(), [*GLUE_FT, "--augment", "mask", "--degree", "1.5"],
        "argument --degree: must be in [0, 1], got 1.5"),
    Row("degree-negative", "`--degree -0.1`", glue(), [*GLUE_FT, "--augment", "mask", "--degree=-0.1"],
        "argument --degree: must be in [0, 1], got -0.1"),
    Row("degree-nan", "`--degree nan`", glue(), [*GLUE_FT, "--augment", "mask", "--degree", "nan"],
        "argument --degree: must be in [0, 1], got nan"),
    Row("augment-degree-above-1", "`augment --degree 2`", custom(CSV_OK),
        [*AUGMENT[:4], "2", *AUGMENT[5:], *CUSTOM], "argument --degree: must be in [0, 1], got 2.0"),
    Row("copies-0", "`--copies 0`", glue(), [*GLUE_FT, "--augment", "mask", "--copies", "0"],
        "argument --copies: must be at least 1, got 0"),
    Row("copies-pool-too-large", "`--copies 1000000` on 3 rows (an offline pool above the 2 GB limit)", glue(),
        [*GLUE_FT, "--augment", "mask", "--copies", "1000000"],
        "--copies 1000000 would hold an offline pool of about 16.7 GB in memory (1000000 views of 3 examples); "
        "the limit is 2.0 GB. Use --copies 119875 or fewer, or raise the limit with AUGPRO_MAX_POOL_GB=N (GB)"),
    Row("augment-copies-too-many", "`augment --copies 10000000` on 2 rows (rows held above the 2 GB limit)",
        custom(CSV_OK), [*AUGMENT, "--copies", "10000000", *CUSTOM],
        "--copies 10000000 would hold augmented rows of about 12.8 GB in memory (10000000 views of 2 examples); "
        "the limit is 2.0 GB. Use --copies 1562500 or fewer, or raise the limit with AUGPRO_MAX_POOL_GB=N (GB)"),
    Row("max-length-too-small", "`--max-length 4`", glue(), [*GLUE_FT, "--max-length", "4"],
        "--max-length must be at least 8, got 4"),
    Row("max-length-too-large", "`--max-length 100000` (model has 512 positions)", glue(),
        [*GLUE_FT, "--max-length", "100000"],
        "--max-length 100000 is more than the model's 512 positions; use --max-length 512 or less"),
    Row("learning-rate-0", "`--learning-rate 0`", glue(), [*GLUE_FT, "--learning-rate", "0"],
        "--learning-rate must be positive, got 0.0"),
    Row("student-layers-9", "`--student-layers 9` (MiniLM has 6)", glue(), [*GLUE_FT, "--student-layers", "9"],
        "--student-layers 9: the model has 6 layers"),
    Row("study-python-tag", "study YAML with a `!!python/object/apply:os.system` tag",
        {"evil.yaml": "output_dir: !!python/object/apply:os.system ['touch {tmp}/PWNED']\n"
                      "base: {task: sst2}\ngrids: [{augment: [none]}]\n"},
        ["study", "{tmp}/evil.yaml"],
        "not valid YAML (could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'"),
    # ---- accepted input ----
    Row("accept-100k-char-text", "a 100,000-character text (accepted, truncated to --max-length)",
        custom("text,label\n" + ("word " * 20_000).strip() + ",pos\nbad movie,neg\n"), [*AUGMENT, *CUSTOM],
        "wrote 2 augmented examples", code=0, creates="aug.jsonl"),
    Row("accept-control-chars", "control characters, NUL, escape sequences in a text (accepted)",
        custom("text,label\nhello\x01\x07\x1b[31m\x7f there,pos\nbad\x00 movie\x0b,neg\n"), [*AUGMENT, *CUSTOM],
        "wrote 2 augmented examples", code=0, creates="aug.jsonl"),
    Row("accept-quirks", "BOM, CRLF line ends, quoted commas and newlines, blank lines, unused columns (accepted)",
        custom('\ufeffid,text,label\r\n1,"hello, ""you""\r\nthere",pos\r\n\r\n2,bad,neg\r\n'), [*AUGMENT, *CUSTOM],
        "wrote 2 augmented examples", code=0, creates="aug.jsonl"),
]
ROW_IDS = [r.id for r in ROWS]
assert len(set(ROW_IDS)) == len(ROW_IDS)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 2-label BERT classifier (random, 1 small layer) with the real MiniLM tokenizer: a valid teacher folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from augpro.models import load_tokenizer, save_model

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=64, num_labels=2, max_position_embeddings=512)
    out = tmp_path_factory.mktemp("tiny-teacher") / "teacher"
    save_model(BertForSequenceClassification(cfg), load_tokenizer(None), out)
    return out


class _Evil:
    """Unpickling this would create the file named in its argument."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "unpickled"))


def _materialise(row: Row, folder: Path, teacher: Path) -> dict[str, str]:
    folder.mkdir(parents=True)
    fill = {"{tmp}": str(folder), "{out}": str(folder / "out"), "{teacher}": str(teacher)}

    def sub(text: str) -> str:
        for k, v in fill.items():
            text = text.replace(k, v)
        return text

    special = {
        "TEACHER_CONFIG": (teacher / "config.json").read_text(),
        "TEACHER_WEIGHTS": (teacher / "model.safetensors").read_bytes(),
        "PICKLE": pickle.dumps(_Evil(str(folder / "PWNED"))),
        "CUSTOM_CONFIG": json.dumps({**json.loads((teacher / "config.json").read_text()), "model_type": "evilbert",
                                     "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}}),
        "EVIL_CODE": f"import pathlib\npathlib.Path({str(folder / 'PWNED')!r}).write_text('ran')\n",
    }
    for rel, content in row.files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        content = special.get(content, content) if isinstance(content, str) else content
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            with open(path, "w", encoding="utf-8", newline="") as fh:
                fh.write(sub(content))
    if row.id == "remote-code-refused":
        for f in teacher.iterdir():
            if f.name.startswith("tokenizer"):
                (folder / "custom" / f.name).write_bytes(f.read_bytes())
    return fill


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>") for p in folder.rglob("*")}


class Result(NamedTuple):
    proc: subprocess.CompletedProcess
    fill: dict
    before: dict
    after: dict


def _cli_child(args: list[str], out_path: str, err_path: str, cwd: str) -> None:  # pragma: no cover - child
    """In a forked process: what ``python -m augpro.cli ARGS`` does, stdout/stderr to files."""
    os.chdir(cwd)
    os.environ.update(CHILD_ENV)
    for fd, path in ((1, out_path), (2, err_path)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", closefd=False), encoding="utf-8", line_buffering=True)
    sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", closefd=False), encoding="utf-8", line_buffering=True)
    sys.argv = ["augpro", *args]
    try:
        from augpro.cli import main

        code = main(args)
    except SystemExit as exc:  # argparse errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_FORKSERVER: list = []


def _forkserver():
    if not _FORKSERVER:
        ctx = multiprocessing.get_context("forkserver")
        # the server imports these once; every row's process is forked from it (no torch state, no threads)
        ctx.set_forkserver_preload(["augpro.cli", "augpro.runner", "augpro.offline", "augpro.study", "test_errors"])
        _FORKSERVER.append(ctx)
    return _FORKSERVER[0]


def _run(row: Row, folder: Path, teacher: Path, python_m: bool) -> Result:
    fill = _materialise(row, folder, teacher)
    args = []
    for a in row.args:
        for k, v in fill.items():
            a = a.replace(k, v)
        args.append(a)
    before = _snapshot(folder)
    if python_m:
        proc = subprocess.run([sys.executable, "-m", "augpro.cli", *args], capture_output=True, text=True,
                              cwd=folder, env={**os.environ, **CHILD_ENV}, timeout=600)
    else:
        logs = folder.parent / f"{folder.name}.log"
        logs.mkdir()
        out, err = logs / "stdout", logs / "stderr"
        p = _forkserver().Process(target=_cli_child, args=(args, str(out), str(err), str(folder)))
        p.start()
        p.join(600)
        if p.exitcode is None:
            p.kill()
            pytest.fail(f"{row.id}: the CLI did not finish in 600 s")
        proc = subprocess.CompletedProcess(["augpro", *args], p.exitcode,
                                           out.read_text(encoding="utf-8", errors="replace"),
                                           err.read_text(encoding="utf-8", errors="replace"))
    return Result(proc, fill, before, _snapshot(folder))


def _selected_rows(request, test_name: str) -> list[Row]:
    return [item.callspec.params["row"] for item in request.session.items
            if item.module is request.module and item.originalname == test_name]


@pytest.fixture(scope="module")
def cli_results(request, tmp_path_factory, tiny_teacher) -> dict[str, Result]:
    """Run every selected row's CLI call (see the module docstring for how)."""
    selected = _selected_rows(request, "test_bad_input_row")
    base = tmp_path_factory.mktemp("rows")
    if ALL_SUBPROCESS:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {r.id: pool.submit(_run, r, base / r.id, tiny_teacher, True) for r in selected}
            return {k: f.result() for k, f in futures.items()}
    with pytest.MonkeyPatch.context() as mp:  # the forkserver (and its preloaded transformers) see these
        for k, v in CHILD_ENV.items():
            mp.setenv(k, v)
        return {r.id: _run(r, base / r.id, tiny_teacher, False) for r in selected}


def _check(row: Row, result: Result) -> None:
    proc, fill, before, after = result
    expected = row.message
    for k, v in fill.items():
        expected = expected.replace(k, v)
    assert proc.returncode == row.code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "PWNED" not in {Path(p).name for p in after}, "untrusted content was executed"
    if row.code == 0:
        assert expected in proc.stdout
        created = set(after) - set(before)
        assert created == {row.creates}, created
        lines = (Path(fill["{tmp}"]) / row.creates).read_text(encoding="utf-8").splitlines()
        assert len(lines) == 2 and all(isinstance(json.loads(line)["text"], str) for line in lines)
        return
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    assert expected in lines[-1], proc.stderr[-3000:]
    assert re.match(r"augpro( \w+)?: error: ", lines[-1]), lines[-1]
    # no partial output: the folder holds exactly what the test wrote, byte for byte
    assert after == before, sorted(set(after) ^ set(before))
    assert not Path(fill["{out}"]).exists()


# --------------------------------------------------------------------------- the table


@pytest.mark.parametrize("row", ROWS, ids=ROW_IDS)
def test_bad_input_row(row: Row, cli_results):
    _check(row, cli_results[row.id])


PYTHON_M_SAMPLE = ["glue-malformed-row", "csv-non-utf8", "degree-above-1", "teacher-pickle", "output-under-a-file",
                   "study-python-tag", "accept-control-chars"]


@pytest.mark.skipif(ALL_SUBPROCESS, reason="every row already ran through python -m augpro.cli")
@pytest.mark.parametrize("row", [r for r in ROWS if r.id in PYTHON_M_SAMPLE],
                         ids=[r.id for r in ROWS if r.id in PYTHON_M_SAMPLE])
def test_rows_through_python_m(row: Row, tmp_path, tiny_teacher):
    """The literal ``python -m augpro.cli`` subprocess gives the same result as the forked CLI."""
    _check(row, _run(row, tmp_path / row.id, tiny_teacher, python_m=True))


def test_100k_text_is_truncated_to_max_length(cli_results):
    """The 100,000-character row: the augmented copy is a --max-length (128 tokens) prefix."""
    if "accept-100k-char-text" not in cli_results:
        pytest.skip("row not selected")
    _, fill, _, _ = cli_results["accept-100k-char-text"]
    first = json.loads((Path(fill["{tmp}"]) / "aug.jsonl").read_text().splitlines()[0])
    assert first["eligible"] <= 126 and len(first["text"]) < 1000


def test_docs_table_lists_every_row():
    """docs/errors.md has one table line per row, with its id and message."""
    text = DOCS.read_text(encoding="utf-8")
    for row in ROWS:
        line = next((ln for ln in text.splitlines() if f"`{row.id}`" in ln), None)
        assert line is not None, f"docs/errors.md lacks row {row.id}"
        assert f"| {row.code} |" in line, row.id


# --------------------------------------------------------------------------- security


def test_pickle_only_checkpoint_is_refused_and_never_unpickled(tmp_path, tiny_teacher):
    from augpro.models import load_classifier, load_tokenizer, model_fingerprint
    from augpro.tasks import get_task

    folder = tmp_path / "pickled"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_teacher / "config.json").read_text())
    marker = tmp_path / "unpickled"
    for name in ("pytorch_model.bin", "model.pt", "weights.ckpt"):
        (folder / name).write_bytes(pickle.dumps(_Evil(str(marker))))
    for call in (lambda: load_classifier(str(folder), get_task("sst2"), require_head=True),
                 lambda: load_classifier(str(folder), get_task("sst2")),
                 lambda: load_tokenizer(str(folder)),
                 lambda: model_fingerprint(str(folder))):
        with pytest.raises(UserError, match="only safetensors"):
            call()
    assert not marker.exists()


def test_classifier_loading_asks_transformers_for_safetensors_only():
    source = (SRC / "models.py").read_text()
    calls = re.findall(r"AutoModel\w*\.from_pretrained\((.*?)\)\n", source, flags=re.S)
    assert calls and all("use_safetensors=True" in c for c in calls)


def test_trust_remote_code_is_off_unless_asked():
    from augpro.cli import build_parser, config_from_args
    from augpro.config import TrainConfig

    assert TrainConfig().trust_remote_code is False
    parser = build_parser()
    for cmd, mode in (("teacher", "teacher"), ("finetune", "ft")):
        ns = parser.parse_args([cmd, "--output-dir", "x"])
        assert config_from_args(ns, mode).trust_remote_code is False
        ns = parser.parse_args([cmd, "--output-dir", "x", "--trust-remote-code"])
        assert config_from_args(ns, mode).trust_remote_code is True
    ns = parser.parse_args(["distill", "--output-dir", "x", "--teacher", "t"])
    assert config_from_args(ns, "kd").trust_remote_code is False
    # evaluate and augment have no flag: they never pass trust_remote_code=True
    for name in ("runner.py", "offline.py", "study.py", "study_grid.py", "quickstart.py"):
        assert "trust_remote_code=True" not in (SRC / name).read_text()
    import inspect

    from augpro.models import load_classifier, load_tokenizer

    for fn in (load_classifier, load_tokenizer):
        assert inspect.signature(fn).parameters["trust_remote_code"].default is False


FORBIDDEN = {
    r"(?<![\w.])eval\(": "eval()",
    r"(?<![\w.])exec\(": "exec()",
    r"\bpickle\b|\bdill\b|\bcloudpickle\b|\bmarshal\b|\bshelve\b": "pickle-family modules",
    r"\btorch\.load\(|\bjoblib\.load\(|\bnp\.load\([^)]*allow_pickle=True": "pickle-based loaders",
    r"\byaml\.(?!safe_load\b|YAMLError\b|safe_dump\b|dump\b)\w+\(|\byaml\.load\(": "YAML loaders other than safe_load",
    r"\bsubprocess\b|\bos\.system\(|\bos\.popen\(|__import__\(|\bimportlib\b": "running or importing named code",
    r"trust_remote_code\s*=\s*True": "trust_remote_code=True",
}


def _code_lines(path: Path):
    """(line number, code) with string literals and comments removed (messages may say "pickle")."""
    import tokenize

    skip = {tokenize.STRING, tokenize.COMMENT, *(getattr(tokenize, n) for n in ("FSTRING_START", "FSTRING_MIDDLE",
                                                                                "FSTRING_END") if hasattr(tokenize, n))}
    lines: dict[int, list[str]] = {}
    with open(path, "rb") as fh:
        for tok in tokenize.tokenize(fh.readline):
            if tok.type not in skip and tok.string.strip():
                lines.setdefault(tok.start[0], []).append(tok.string)
    for lineno, parts in sorted(lines.items()):
        # rejoin without spaces around dots and before "(" so "torch . load (" reads "torch.load("
        yield lineno, re.sub(r"\s*([.(])\s*", r"\1", " ".join(parts))


def test_source_has_no_eval_exec_pickle_or_unsafe_yaml():
    offenders = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for lineno, code in _code_lines(path):
            for pattern, what in FORBIDDEN.items():
                if re.search(pattern, code):
                    offenders.append(f"{path.relative_to(SRC)}:{lineno}: {what}: {code.strip()}")
    assert not offenders, "\n".join(offenders)
    assert "yaml.safe_load(" in (SRC / "study_grid.py").read_text()  # where study YAML is read


def test_forbidden_patterns_do_catch_offenders(tmp_path):
    samples = {"x = eval(s)": "eval()", "exec (code)": "exec()", "import pickle": "pickle-family modules",
               "from marshal import loads": "pickle-family modules", "sd = torch.load(p)": "pickle-based loaders",
               "yaml.load(fh)": "YAML loaders other than safe_load",
               "yaml.unsafe_load(fh)": "YAML loaders other than safe_load",
               "os.system(cmd)": "running or importing named code",
               "f(trust_remote_code = True)": "trust_remote_code=True"}
    fine = ["model.eval()", "doc = yaml.safe_load(text)", "self.teacher.eval()", "x = evaluate(y)",
            "pickles = []", 'raise E("holds pickle weights; no eval(x) or torch.load(p)")', "# import pickle"]
    src = tmp_path / "sample.py"
    src.write_text("\n".join([*samples, *fine]) + "\n")
    found = {}
    for lineno, code in _code_lines(src):
        found[lineno] = {what for pattern, what in FORBIDDEN.items() if re.search(pattern, code)}
    for i, what in enumerate(samples.values(), start=1):
        assert what in found.get(i, set()), (i, list(samples)[i - 1])
    for i in range(len(samples) + 1, len(samples) + len(fine) + 1):
        assert not found.get(i), (i, fine[i - len(samples) - 1])


def test_study_yaml_python_tags_are_not_constructed(tmp_path):
    if not (SRC / "study.py").is_file():
        pytest.skip("augpro.study not present")
    from augpro.study import load_study

    marker = tmp_path / "PWNED"
    cfg = tmp_path / "evil.yaml"
    cfg.write_text(f"output_dir: !!python/object/apply:os.system ['touch {marker}']\n"
                   "base: {task: sst2}\ngrids: [{augment: [none]}]\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_study(cfg)
    assert not marker.exists()


def test_config_paths_are_data_not_code(tmp_path, monkeypatch):
    """Paths from a config are only opened as files: shell syntax in them is never run."""
    from augpro.config import TrainConfig
    from augpro.runner import load_data

    marker = tmp_path / "PWNED"
    monkeypatch.chdir(tmp_path)
    for path in (f"$(touch {marker})", f"`touch {marker}`", f"; touch {marker}", "__import__('os').system('x')"):
        cfg = TrainConfig(mode="ft", task=None, train_file=path, dev_file=path, text_columns="text",
                          label_column="label")
        with pytest.raises(UserError):
            load_data(cfg)
        with pytest.raises(UserError):
            load_data(TrainConfig(mode="ft", task="sst2", data_dir=path))
    assert not marker.exists()
