"""Real end-to-end paths: real MiniLM weights, real GLUE rows, teacher -> KD/FT students,
checkpoints loaded by ``transformers.pipeline`` with no augpro code."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from augpro.config import TrainConfig
from augpro.errors import UserError
from augpro.models import load_classifier, make_layer_subset_student, parse_layers
from augpro.runner import run_training
from augpro.tasks import get_task

QUICK = dict(progress=False, save_checkpoints=False, eval_every_epoch=False, eval_batch_size=256, max_length=64)


@pytest.fixture(scope="module")
def sst2_teacher(tmp_path_factory, data_dir):
    """A MiniLM-L6 teacher fine-tuned for a few steps on real SST-2 rows."""
    out = tmp_path_factory.mktemp("teacher") / "sst2"
    result = run_training(TrainConfig(mode="teacher", task="sst2", data_dir=data_dir, train_size=256, epochs=1,
                                      batch_size=32, output_dir=str(out), **QUICK))
    assert result["layers"] == 6
    return out, result


@pytest.mark.slow
def test_teacher_to_kd_student_to_pipeline(sst2_teacher, data_dir, tmp_path):
    from transformers import pipeline

    teacher_dir, teacher_result = sst2_teacher
    out = tmp_path / "student"
    result = run_training(TrainConfig(mode="kd", task="sst2", data_dir=data_dir, train_size=256, teacher=str(teacher_dir),
                                      student_layers="2", max_steps=12, output_dir=str(out), **QUICK))
    assert result["layers"] == 2 and result["parameters"] < teacher_result["parameters"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["dev"]) == {"accuracy", "score"} and metrics["dev_examples"] == 872
    assert metrics["settings"]["teacher"] == str(teacher_dir)
    ids = json.loads((out / "train_ids.json").read_text())["ids"]
    assert len(ids) == 256
    assert (out / "model.safetensors").is_file() and not list(out.glob("*.bin"))
    clf = pipeline("text-classification", model=str(out), device=-1)
    preds = clf(["a gorgeous, witty, seductive movie.", "the worst film of the year."])
    assert {p["label"] for p in preds} <= {"negative", "positive"}
    # the saved student scores the same through `augpro evaluate` as in metrics.json
    proc = subprocess.run([sys.executable, "-m", "augpro.cli", "evaluate", "--model", str(out), "--task", "sst2",
                           "--data-dir", data_dir, "--max-length", "64", "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["accuracy"] == pytest.approx(metrics["dev"]["accuracy"], abs=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["knn", "mixkd", "fgsm", "augpro-mix", "augpro-fgsm", "eda"])
def test_kd_with_each_augmenter_runs(method, sst2_teacher, data_dir, tmp_path):
    teacher_dir, _ = sst2_teacher
    degree = {"knn": 0.3, "augpro-mix": 0.3, "eda": 0.1}.get(method)
    result = run_training(TrainConfig(mode="kd", task="sst2", data_dir=data_dir, train_size=64, teacher=str(teacher_dir),
                                      student_layers="1", max_steps=3, batch_size=16, augment=method, degree=degree,
                                      copies=2, output_dir=str(tmp_path / method), **QUICK))
    aug = result["augmentation"]
    assert aug["method"] == method
    assert 0.0 <= aug["label_flip_rate"] <= 1.0
    if degree is not None and method != "eda":
        assert aug["realised_degree"] == pytest.approx(degree, abs=0.06)


@pytest.mark.slow
def test_finetune_with_augmentation_inherits_labels(data_dir, tmp_path):
    result = run_training(TrainConfig(mode="ft", task="rte", data_dir=data_dir, train_size=64, student_layers="1",
                                      max_steps=3, batch_size=16, augment="augpro-mix", degree=0.3,
                                      output_dir=str(tmp_path / "ft"), **QUICK))
    assert result["mode"] == "ft" and result["augmentation"]["realised_degree"] == pytest.approx(0.3, abs=0.06)
    assert "label_flip_rate" not in result["augmentation"]  # no teacher in FT mode


@pytest.mark.slow
def test_distill_custom_csv_pair_task(sst2_teacher, rte, tmp_path):
    """A custom pair task from a CSV with renamed columns: teacher then KD student, pipeline loads it."""
    from transformers import pipeline

    for name, split, n in (("train", rte.train, 96), ("dev", rte.dev, 48)):
        with open(tmp_path / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["premise", "claim", "verdict"])
            for (a, b), y in list(zip(split.texts, split.labels))[:n]:
                w.writerow([a, b, ["yes", "no"][y]])
    files = ["--train-file", str(tmp_path / "train.csv"), "--dev-file", str(tmp_path / "dev.csv"),
             "--text-columns", "premise,claim", "--label-column", "verdict", "--max-length", "64", "--quiet",
             "--no-checkpoints"]
    t = subprocess.run([sys.executable, "-m", "augpro.cli", "teacher", *files, "--max-steps", "3",
                        "--output-dir", str(tmp_path / "t")], capture_output=True, text=True)
    assert t.returncode == 0, t.stderr[-2000:]
    s = subprocess.run([sys.executable, "-m", "augpro.cli", "distill", *files, "--teacher", str(tmp_path / "t"),
                        "--max-steps", "3", "--augment", "knn", "--degree", "0.2", "--output-dir", str(tmp_path / "s")],
                       capture_output=True, text=True)
    assert s.returncode == 0, s.stderr[-2000:]
    assert "kd custom: dev" in s.stdout
    clf = pipeline("text-classification", model=str(tmp_path / "s"), device=-1)
    pred = clf({"text": "A man is sleeping.", "text_pair": "Someone sleeps."})
    pred = pred[0] if isinstance(pred, list) else pred
    assert pred["label"] in {"no", "yes"}


def test_layer_subset_student():
    assert parse_layers("2", 6) == [0, 5]
    assert parse_layers("3", 6) == [0, 2, 5]  # round(2.5) == 2
    assert parse_layers("0,3", 6) == [0, 3]
    with pytest.raises(UserError):
        parse_layers("7", 6)
    with pytest.raises(UserError):
        parse_layers("3,1", 6)
    model = load_classifier(None, get_task("sst2"))
    full = model.bert.encoder.layer
    kept = [full[0], full[5]]
    student = make_layer_subset_student(model, "2")
    assert student.config.num_hidden_layers == 2
    assert list(student.bert.encoder.layer) == kept
    out = student(input_ids=torch.tensor([[101, 2204, 102]])).logits
    assert out.shape == (1, 2)


def test_teacher_label_count_and_pickle_checks(tmp_path, sst2_teacher):
    teacher_dir, _ = sst2_teacher
    with pytest.raises(UserError, match="has 2 labels but task stsb needs 1"):
        load_classifier(str(teacher_dir), get_task("stsb"), require_head=True)
    with pytest.raises(UserError, match="not a fine-tuned sequence classifier"):
        load_classifier(None, get_task("sst2"), require_head=True)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text((teacher_dir / "config.json").read_text())
    (pickled / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(UserError, match="only safetensors"):
        load_classifier(str(pickled), get_task("sst2"), require_head=True)


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "augpro.cli", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.parametrize("args, message", [
    (["distill", "--task", "imdb"], "unknown task 'imdb'"),
    (["distill", "--task", "sst2", "--train-size", "100000"], "larger than the training data"),
    (["distill", "--task", "sst2", "--data-dir", "/nonexistent"], "data folder not found"),
    (["finetune", "--task", "sst2", "--degree", "1.5"], "must be in [0, 1]"),
    (["finetune", "--task", "sst2", "--copies", "0"], "must be at least 1"),
    (["distill", "--task", "stsb"], "has 2 labels but task stsb needs 1"),
])
def test_cli_user_errors_are_one_line_and_write_nothing(args, message, tmp_path, sst2_teacher, data_dir):
    teacher_dir, _ = sst2_teacher
    out = tmp_path / "out"
    extra = ["--output-dir", str(out)]
    if args[0] == "distill":
        extra += ["--teacher", str(teacher_dir)]
    if "--data-dir" not in args:
        extra += ["--data-dir", data_dir]
    proc = _cli(*args, *extra)
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert message in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()



@pytest.mark.slow
def test_regression_kd_student_learns_its_teachers_scores(data_dir, tmp_path, tokenizer):
    """STS-B through the whole regression path: a 2-layer KD student trained on a teacher's
    scores (MSE) must reproduce them on its training rows. Guards the regression wiring (head,
    loss, cached teacher outputs) of layer-subset students. The teacher is MiniLM-L6 with a
    seeded random regression head scaled so its scores spread like STS-B's (mean 2.5, std 1):
    training one that spreads takes minutes, since a fresh head first spends its steps on the mean."""
    import numpy as np
    from transformers import AutoModelForSequenceClassification

    from augpro.data import load_glue_split, subset
    from augpro.models import save_model

    task = get_task("stsb")
    train = subset(load_glue_split(task, "train", data_dir), 64, seed=0, regression=True)
    enc = tokenizer([a for a, _ in train.texts], [b for _, b in train.texts], truncation=True, max_length=64,
                    padding=True, return_tensors="pt")
    teacher = load_classifier(None, task).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        teacher.classifier.weight.copy_(torch.randn(teacher.classifier.weight.shape, generator=g))
        raw = teacher(**enc).logits.view(-1)
        teacher.classifier.weight /= raw.std()
        teacher.classifier.bias.copy_(2.5 - raw.mean() / raw.std())
    teacher.config.architectures = [type(teacher).__name__]
    save_model(teacher, tokenizer, tmp_path / "t")

    result = run_training(TrainConfig(mode="kd", task="stsb", data_dir=data_dir, train_size=64, dev_size=100,
                                      batch_size=16, teacher=str(tmp_path / "t"), student_layers="2", max_steps=48,
                                      learning_rate=5e-4, output_dir=str(tmp_path / "s"), **QUICK))
    assert result["layers"] == 2 and set(result["dev"]) == {"pearson", "spearman", "score"}
    ids = json.loads((tmp_path / "s" / "train_ids.json").read_text())["ids"]
    assert ids == train.ids  # the student trained on exactly these rows
    scores = {}
    for name in ("t", "s"):
        model = AutoModelForSequenceClassification.from_pretrained(tmp_path / name).eval()
        assert model.config.problem_type == "regression" and model.config.num_labels == 1
        with torch.no_grad():
            scores[name] = model(**enc).logits.view(-1).numpy()
    assert scores["t"].std(ddof=1) == pytest.approx(1.0, rel=1e-3)  # torch.std is unbiased
    assert np.corrcoef(scores["t"], scores["s"])[0, 1] > 0.8
    assert np.abs(scores["t"] - scores["s"]).mean() < 0.5 * np.abs(scores["t"] - scores["t"].mean()).mean()
