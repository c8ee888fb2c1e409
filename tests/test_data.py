"""Data loading, subsets, collation and metrics on real GLUE files."""

from __future__ import annotations

import collections
import json

import numpy as np
import pytest

from augpro.data import load_task_data, pad_batch, encode, stratified_order, subset
from augpro.errors import UserError
from augpro.metrics import compute_metrics
from augpro.tasks import GLUE_TASKS, get_task

EXPECTED_ROWS = {"sst2": (67349, 872), "cola": (8551, 1043), "mrpc": (3668, 408), "rte": (2490, 277),
                 "stsb": (5749, 1500), "wnli": (635, 71)}


@pytest.mark.parametrize("name", sorted(EXPECTED_ROWS))
def test_glue_tasks_load_every_row(name, data_dir):
    data = load_task_data(get_task(name), data_dir=data_dir)
    train_rows, dev_rows = EXPECTED_ROWS[name]
    # the data README counts MRPC's header line among its 3,668 train rows
    assert len(data.train) in (train_rows, train_rows - 1)
    assert len(data.dev) == dev_rows
    assert all(len(t) == len(data.task.text_columns) and all(x.strip() for x in t) for t in data.train.texts)
    if data.task.is_regression:
        assert 0.0 <= min(data.train.labels) and max(data.train.labels) <= 5.0
    else:
        assert set(data.train.labels) == set(range(data.task.num_labels))


def test_task_aliases_and_unknown():
    assert get_task("SST-2").name == "sst2"
    assert get_task("sts-b").name == "stsb"
    with pytest.raises(UserError, match="unknown task 'imdb'"):
        get_task("imdb")
    assert {"mnli", "qnli", "qqp"} <= set(GLUE_TASKS)


def test_subsets_are_stratified_seeded_and_nested(sst2):
    small = subset(sst2.train, 500, seed=0)
    big = subset(sst2.train, 1000, seed=0)
    assert set(small.ids) < set(big.ids)
    assert subset(sst2.train, 500, seed=0).ids == small.ids
    assert subset(sst2.train, 500, seed=1).ids != small.ids
    share = np.mean(sst2.train.labels)
    for part in (small, big):
        counts = collections.Counter(part.labels)
        assert abs(counts[1] - share * len(part)) <= 1.0


def test_regression_subsets_nested(data_dir):
    stsb = load_task_data(get_task("stsb"), data_dir=data_dir)
    a, b = subset(stsb.train, 300, 0, regression=True), subset(stsb.train, 600, 0, regression=True)
    assert set(a.ids) < set(b.ids)
    assert abs(np.mean(a.labels) - np.mean(stsb.train.labels)) < 0.15


def test_stratified_order_every_prefix_balanced():
    labels = [0] * 300 + [1] * 100 + [2] * 600
    order = stratified_order(labels, seed=3)
    for n in (10, 57, 100, 999):
        counts = collections.Counter(labels[i] for i in order[:n])
        for c, frac in ((0, 0.3), (1, 0.1), (2, 0.6)):
            assert abs(counts[c] - frac * n) <= 1.0 + 1e-9


def test_train_size_too_large(rte):
    with pytest.raises(UserError, match="larger than the training data"):
        subset(rte.train, 10_000, 0)


def test_dynamic_padding_and_pairs(rte, tokenizer):
    ds = encode(rte.train.select(range(8)), tokenizer, max_length=64)
    batch = pad_batch([ds[i] for i in range(8)], tokenizer.pad_token_id)
    lengths = [len(ds[i]["input_ids"]) for i in range(8)]
    assert batch["input_ids"].shape == (8, max(lengths))
    assert batch["attention_mask"].sum(1).tolist() == lengths
    assert batch["token_type_ids"].max() == 1  # a sentence pair


def test_custom_files_csv_jsonl_and_errors(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text('premise,hyp,gold\n"A man, sleeping",He sleeps,yes\nA dog,A cat,no\nRain,"Wet ""roads""",yes\n')
    dev = tmp_path / "dev.jsonl"
    dev.write_text("\n".join(json.dumps(r) for r in [{"premise": "x", "hyp": "y", "gold": "no"}]) + "\n")
    data = load_task_data(None, train_file=str(train), dev_file=str(dev), text_columns=["premise", "hyp"],
                          label_column="gold")
    assert data.task.labels == ("no", "yes")
    assert data.train.texts[0] == ("A man, sleeping", "He sleeps")
    assert data.train.texts[2][1] == 'Wet "roads"'
    bad_dev = tmp_path / "bad.jsonl"
    bad_dev.write_text(json.dumps({"premise": "x", "hyp": "y", "gold": "maybe"}) + "\n")
    with pytest.raises(UserError, match="unknown label 'maybe'"):
        load_task_data(None, train_file=str(train), dev_file=str(bad_dev), text_columns=["premise", "hyp"],
                       label_column="gold")
    with pytest.raises(UserError, match="missing column 'hypothesis'"):
        load_task_data(None, train_file=str(train), dev_file=str(dev), text_columns=["premise", "hypothesis"],
                       label_column="gold")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(UserError, match="no data rows"):
        load_task_data(None, train_file=str(empty), dev_file=str(dev), text_columns=["premise"], label_column="gold")


def test_missing_data_dir_and_task_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("AUGPRO_DATA_DIR", raising=False)
    with pytest.raises(UserError, match="no data folder"):
        load_task_data(get_task("sst2"))
    with pytest.raises(UserError, match="data folder not found"):
        load_task_data(get_task("sst2"), data_dir=str(tmp_path / "nope"))
    with pytest.raises(UserError, match="has no RTE/ folder"):
        load_task_data(get_task("rte"), data_dir=str(tmp_path))


def test_metrics_match_definitions():
    task = get_task("mrpc")
    logits = np.array([[0, 1], [1, 0], [0, 1], [0, 1]], dtype=float)
    m = compute_metrics(task, logits, np.array([1, 0, 0, 1]))
    assert m["accuracy"] == 0.75 and m["f1"] == pytest.approx(0.8) and m["score"] == pytest.approx(0.775)
    cola = compute_metrics(get_task("cola"), logits, np.array([1, 0, 0, 1]))
    assert cola["matthews_correlation"] == pytest.approx(0.57735, abs=1e-4)
    sts = compute_metrics(get_task("stsb"), np.array([[1.0], [2.0], [3.0]]), np.array([1.0, 2.5, 2.9]))
    assert sts["spearman"] == pytest.approx(1.0) and 0.9 < sts["pearson"] < 1.0


def test_hold_out_is_disjoint_stratified_and_seed_independent():
    from augpro.data import Split, hold_out

    labels = [i % 3 for i in range(600)]
    split = Split([(f"t{i}",) for i in range(600)], labels)
    rest, held = hold_out(split, 60, seed=7)
    assert len(held) == 60 and len(rest) == 540
    assert not set(held.ids) & set(rest.ids)
    assert collections.Counter(held.labels) == {0: 20, 1: 20, 2: 20}
    # training subsets of any seed come from the rest, so they never hold a validation row
    for seed in (0, 1, 2):
        assert not set(subset(rest, 300, seed).ids) & set(held.ids)
    assert hold_out(split, 60, seed=7)[1].ids == held.ids
    assert hold_out(split, None, seed=7) == (split, None)
    with pytest.raises(UserError, match="leaves no training rows"):
        hold_out(split, 600, seed=7)
