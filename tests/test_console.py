"""What users see: a clean epoch line plus one bar (no per-step dicts of quoted numbers, no nested
bars), and ``--copies`` refused with one line when the offline pool would be too large."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import warnings
from types import SimpleNamespace

import pytest
import torch

from augpro.augment import build_augmenter
from augpro.augment.base import PrepareContext
from augpro.augment.pool import DEFAULT_MAX_POOL_GB, MAX_POOL_ENV, check_pool_size, estimate_view_bytes
from augpro.console import EpochLog, format_eval
from augpro.data import encode, subset
from augpro.errors import UserError

from conftest import tiny_classifier


# ------------------------------------------------------------------ --copies bound
def _prepare(aug, split, tokenizer, copies):
    enc = encode(split, tokenizer, 128).encodings
    aug.prepare(PrepareContext(texts=split.texts, input_ids=enc["input_ids"], token_type_ids=enc.get("token_type_ids"),
                               tokenizer=tokenizer, max_length=128, copies=copies,
                               generator=torch.Generator().manual_seed(0), show_progress=False))


@pytest.mark.parametrize("method", ["mask", "eda"])
def test_copies_100000_on_64_rows_is_refused_before_building(method, sst2, tokenizer, monkeypatch):
    """The issue's case (it grew past 3 GB): refused at once, with the copies that would fit."""
    monkeypatch.delenv(MAX_POOL_ENV, raising=False)
    rows = subset(sst2.train, 64, 0)
    aug = build_augmenter(method, degree=0.3)
    with pytest.raises(UserError) as err:
        _prepare(aug, rows, tokenizer, 100_000)
    message = str(err.value)
    assert "\n" not in message and "--copies 100000 would hold an offline pool of about" in message
    assert f"the limit is {DEFAULT_MAX_POOL_GB:.1f} GB" in message and MAX_POOL_ENV in message
    fits = int(re.search(r"Use --copies (\d+) or fewer", message).group(1))
    assert 1000 < fits < 100_000
    assert not getattr(aug, "_pool", None)  # nothing was built
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EDA's shortfall warnings
        _prepare(aug, rows, tokenizer, 2)  # a normal pool still builds
    assert len(aug.pool) == 2


def test_pool_limit_is_configurable_and_estimates_are_plausible(monkeypatch):
    view = estimate_view_bytes(n_tokens=1000, n_examples=64, token_types=True, writes_text=False)
    assert 16_000 < view < 40_000  # 16 bytes per token plus per-example and per-view overhead
    assert estimate_view_bytes(1000, 64, True, True) > view + 60_000  # kept texts
    check_pool_size(view, 10, 64)  # far below the limit: fine
    monkeypatch.setenv(MAX_POOL_ENV, "0.0001")  # 100 kB
    with pytest.raises(UserError, match=r"about 0\.3 MB in memory \(10 views of 64 examples\); "
                                        r"the limit is 0\.1 MB\. Use --copies 2 or fewer"):
        check_pool_size(view, 10, 64)
    monkeypatch.setenv(MAX_POOL_ENV, "lots")
    with pytest.raises(UserError, match="not a number"):
        check_pool_size(view, 10, 64)


# ------------------------------------------------------------------ console output
def test_format_eval_names_splits_and_drops_bookkeeping():
    assert format_eval({"eval_accuracy": 0.81234, "eval_score": 0.81234, "eval_runtime": 3.2, "eval_loss": 0.4,
                        "epoch": 1.0}) == "dev accuracy 0.8123"
    line = format_eval({"eval_val_accuracy": 0.5, "eval_val_f1": 0.25, "eval_val_score": 0.375,
                        "eval_dev_accuracy": 0.75, "eval_dev_score": 0.75})
    assert line == "val accuracy 0.5000  f1 0.2500  score 0.3750  dev accuracy 0.7500"


def test_epoch_log_prints_one_line_per_epoch(capsys):
    log = EpochLog(progress=False)
    state = SimpleNamespace(is_world_process_zero=True, max_steps=4, global_step=0, epoch=0.0, num_train_epochs=2)
    log.on_train_begin(None, state, None)
    for epoch in (1, 2):
        log.on_epoch_begin(None, state, None)
        for loss in (0.5, 0.25):
            log.on_log(None, state, None, logs={"loss": loss, "aug_degree": 0.3, "learning_rate": 1e-4})
        state.epoch = float(epoch)
        log.on_log(None, state, None, logs={"eval_accuracy": 0.5 + epoch / 10, "eval_runtime": 1.0})
    log.on_train_end(None, state, None)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert re.fullmatch(r"epoch 1/2  loss 0\.3750  aug_degree 0\.3000  dev accuracy 0\.6000  \(\d+ s\)", lines[0])
    assert lines[1].startswith("epoch 2/2  loss 0.3750") and "dev accuracy 0.7000" in lines[1]


@pytest.fixture(scope="module")
def tiny_run_dir(tmp_path_factory, sst2, tokenizer):
    """A tiny 'pretrained' checkpoint and 48/16-row CSV files from real SST-2 rows."""
    root = tmp_path_factory.mktemp("tiny-run")
    tiny_classifier(layers=1, seed=3).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    for name, rows in (("train", sst2.train.select(range(48))), ("dev", sst2.dev.select(range(16)))):
        with open(root / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["sentence", "label"])
            w.writerows((t[0], y) for t, y in zip(rows.texts, rows.labels))
    return root


@pytest.mark.parametrize("quiet", [False, True])
def test_cli_prints_epoch_lines_and_one_bar(quiet, tiny_run_dir, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "augpro.cli", "teacher", "--model", str(tiny_run_dir / "base"),
            "--train-file", str(tiny_run_dir / "train.csv"), "--dev-file", str(tiny_run_dir / "dev.csv"),
            "--text-columns", "sentence", "--label-column", "label", "--epochs", "2", "--batch-size", "8",
            "--no-checkpoints", "--output-dir", str(out), *(["--quiet"] if quiet else [])]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    epochs = [ln for ln in lines if ln.startswith("epoch ")]
    assert "{'" not in proc.stdout + proc.stderr, "per-step log dicts"
    assert not re.search(r"'\d", proc.stdout), "numbers printed as quoted strings"
    assert "Loading weights" not in proc.stderr and "Writing model shards" not in proc.stderr
    assert "\x1b[A" not in proc.stderr, "a bar opened inside another bar"
    assert lines[-1] == f"saved to {out}"
    if quiet:
        assert epochs == [] and "train:" not in proc.stderr
    else:
        assert len(epochs) == 2
        assert all(re.fullmatch(rf"epoch {i}/2  loss \d\.\d{{4}}  dev accuracy \d\.\d{{4}}  macro_f1 \d\.\d{{4}}  "
                                r"score \d\.\d{4}  \(\d+ s\)", ln) for i, ln in zip((1, 2), epochs)), epochs
        assert "train:" in proc.stderr  # the one bar
