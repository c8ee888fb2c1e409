"""A long fuzz campaign over data loading (not collected by pytest: the name lacks ``test_``).

Two parts:

* **hypothesis**: every property of ``tests/test_fuzz_data.py`` with ``--examples`` examples
  each (fresh random draws, no example database), counting the calls of each property;
* **atheris** (coverage-guided, libFuzzer; optional): raw bytes as CSV/TSV/JSONL training and
  dev files through ``load_task_data``; anything but a consistent split or a ``UserError`` is a
  crash. Needs ``pip install atheris`` (``--atheris-runs 0`` skips it).

Usage::

    python tests/fuzz_campaign.py --examples 5000 --atheris-runs 200000

Prints one line per property and a summary; exits 1 if anything failed. docs/errors.md
records a run's figures.
"""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run_hypothesis(examples: int) -> tuple[int, int]:
    os.environ["AUGPRO_FUZZ_EXAMPLES"] = str(examples)
    os.environ["AUGPRO_FUZZ_RANDOM"] = "1"
    sys.path.insert(0, str(HERE))
    import test_fuzz_data as props
    from augpro.augment import build_augmenter
    from augpro.models import load_tokenizer

    fixtures = {"mask_pipeline": (load_tokenizer(None), build_augmenter)}
    tests = [(name, fn) for name, fn in vars(props).items() if name.startswith("test_fuzz_") and callable(fn)]
    failures = total = 0
    for name, fn in tests:
        before = sum(props.CALLS.values())
        start = time.time()
        kwargs = {k: v for k, v in fixtures.items() if k in inspect.signature(fn).parameters}
        try:
            fn(**kwargs)
            status = "ok"
        except Exception:  # a falsifying example: hypothesis has shrunk and printed it
            failures += 1
            status = "FAILED\n" + traceback.format_exc(limit=3)
        calls = sum(props.CALLS.values()) - before
        total += calls
        print(f"hypothesis {name:48s} {calls:7d} calls {time.time() - start:8.1f} s  {status}", flush=True)
    return total, failures


ATHERIS_TARGET = r'''
import os, sys, tempfile
from pathlib import Path
import atheris
sys.path.insert(0, {here!r})
from augpro import data as D
from augpro.errors import UserError
from test_fuzz_data import check_split
for name in ("_read_delimited", "_read_jsonl", "_utf8_error", "read_table", "_clean_text", "rows_to_split",
             "parse_label", "load_task_data"):
    if hasattr(D, name):  # coverage feedback from augpro's own parsing code (csv and json are C)
        setattr(D, name, atheris.instrument_func(getattr(D, name)))
TMP = Path(tempfile.mkdtemp(prefix="augpro-atheris-"))

def target(buf: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(buf)
    ext = (".csv", ".tsv", ".jsonl")[fdp.ConsumeIntInRange(0, 2)]
    regression = fdp.ConsumeBool()
    pair = fdp.ConsumeBool()
    split_at = fdp.ConsumeIntInRange(0, 255)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    train, dev = TMP / ("train" + ext), TMP / ("dev" + ext)
    train.write_bytes(body)
    dev.write_bytes(body[split_at:] or body)
    cols = ["text", "hyp"] if pair else ["text"]
    try:
        d = D.load_task_data(None, train_file=str(train), dev_file=str(dev), text_columns=cols,
                             label_column="label", regression=regression)
    except UserError:
        return
    check_split(d.train, d.task)
    check_split(d.dev, d.task)

atheris.Setup(sys.argv, target)
atheris.Fuzz()
'''

SEEDS = {
    "csv": b"\x00\x00\x00text,label\nhello there,pos\nbad movie,neg\n",
    "csv-quoted": b"\x00\x01\x00text,hyp,label\n\"a, b\",\"c\"\"d\",yes\nx,y,no\n",
    "tsv": b"\x01\x00\x00text\tlabel\nhello\t1\nbye\t0\n",
    "tsv-score": b"\x01\x01\x00text\thyp\tlabel\nA.\tB.\t4.2\nC.\tD.\tnan\n",
    "jsonl": b'\x02\x00\x00{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n',
    "jsonl-pair": b'\x02\x01\x01{"text": "a", "hyp": "b", "label": 1.5}\n',
}


def run_atheris(runs: int, max_len: int) -> tuple[int, int, str]:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return 0, 0, "atheris not installed (pip install atheris); skipped"
    work = Path(tempfile.mkdtemp(prefix="augpro-atheris-campaign-"))
    corpus = work / "corpus"
    corpus.mkdir()
    for name, seed in SEEDS.items():
        (corpus / name).write_bytes(seed)
    script = work / "target.py"
    script.write_text(ATHERIS_TARGET.replace("{here!r}", repr(str(HERE))))
    cmd = [sys.executable, str(script), f"-runs={runs}", f"-max_len={max_len}", f"-artifact_prefix={work}/",
           "-print_final_stats=1", str(corpus)]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.time() - start
    log = proc.stderr + proc.stdout
    done = next((line for line in log.splitlines() if line.startswith("Done ")), "")
    crashes = [p.name for p in work.glob("crash-*")] + [p.name for p in work.glob("timeout-*")]
    summary = (f"atheris: {done or 'no Done line'}; exit {proc.returncode}; "
               f"{len(list(corpus.iterdir()))} corpus files; "
               f"{elapsed:.0f} s; crashes {crashes or 'none'}")
    if proc.returncode != 0 or crashes:
        print(log[-5000:])
    else:
        shutil.rmtree(work, ignore_errors=True)
    executed = int(done.split()[1]) if done.startswith("Done ") else 0
    return executed, (1 if proc.returncode != 0 or crashes else 0), summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=5000, help="hypothesis examples per property")
    parser.add_argument("--atheris-runs", type=int, default=200_000, help="atheris executions (0: skip)")
    parser.add_argument("--atheris-max-len", type=int, default=2048, help="largest atheris input in bytes")
    args = parser.parse_args()
    start = time.time()
    calls, failures = run_hypothesis(args.examples) if args.examples > 0 else (0, 0)
    print(f"hypothesis total: {calls} calls, {failures} failing properties, {time.time() - start:.0f} s", flush=True)
    if args.atheris_runs > 0:
        runs, bad, summary = run_atheris(args.atheris_runs, args.atheris_max_len)
        print(summary, flush=True)
        failures += bad
    print(f"campaign: {time.time() - start:.0f} s, {'FAILED' if failures else 'no failures'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
