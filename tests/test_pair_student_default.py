"""Defaults version 4: the student's depth and hidden-state KD follow the task's type.

* sentence-pair tasks (a GLUE pair task, or two ``--text-columns``) get a 4-layer student that
  distils the teacher's hidden states (weight 1); single sentences keep 2 layers without it;
* an explicit ``student_layers`` / ``hidden_weight`` always wins; FT runs and ``shared_forward``
  runs get no hidden-state term (no teacher; the two do not combine);
* versions 1-3 keep 2 layers everywhere, so the run ids of grids that pin them do not move;
* the CLI leaves both to the version, and a real run on pair rows trains the 4-layer student.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from augpro.config import DEFAULTS_CHANGES, DEFAULTS_VERSION, PAIR_STUDENT_SINCE, STUDENT_DEFAULTS, TrainConfig
from conftest import tiny_classifier


def _student(**settings) -> tuple[str, float]:
    cfg = TrainConfig(**settings)
    return cfg.student_layers, cfg.hidden_weight


def test_version_4_is_the_default_and_says_what_it_changed():
    assert DEFAULTS_VERSION == PAIR_STUDENT_SINCE == 4
    assert STUDENT_DEFAULTS == {"single": ("2", 0.0), "pair": ("4", 1.0)}
    for word in ("sentence-pair", "--student-layers 4", "--hidden-weight 1", "MRPC", "majority class"):
        assert word in DEFAULTS_CHANGES[4]


@pytest.mark.parametrize("task", ["mrpc", "rte", "stsb", "MRPC", "qnli"])
def test_pair_tasks_get_four_layers_and_hidden_state_kd(task):
    assert _student(task=task, mode="kd", teacher="t") == ("4", 1.0)
    assert _student(task=task, mode="ft") == ("4", 0.0)  # FT has no teacher to distil


@pytest.mark.parametrize("task", ["sst2", "cola", None, "no-such-task"])
def test_single_sentences_and_unknown_tasks_keep_two_layers(task):
    assert _student(task=task, mode="kd", teacher="t") == ("2", 0.0)


def test_custom_files_are_pairs_when_they_name_two_text_columns():
    files = dict(task=None, train_file="train.csv", dev_file="dev.csv", label_column="y", mode="kd", teacher="t")
    assert _student(text_columns="premise,hypothesis", **files) == ("4", 1.0)
    assert _student(text_columns="sentence", **files) == ("2", 0.0)
    # files win over --task: their columns say what the rows are
    assert _student(text_columns="sentence", **{**files, "task": "mrpc"}) == ("2", 0.0)


def test_explicit_settings_win_and_shared_forward_drops_the_hidden_term():
    assert _student(task="mrpc", mode="kd", teacher="t", student_layers="2") == ("2", 1.0)
    assert _student(task="mrpc", mode="kd", teacher="t", hidden_weight=0.0) == ("4", 0.0)
    assert _student(task="sst2", mode="kd", teacher="t", student_layers="0,5", hidden_weight=0.5) == ("0,5", 0.5)
    assert _student(task="mrpc", mode="kd", teacher="t", shared_forward=True) == ("4", 0.0)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_earlier_versions_keep_two_layers_everywhere(version):
    assert _student(task="mrpc", mode="kd", teacher="t", defaults_version=version) == ("2", 0.0)


def test_teachers_are_not_students():
    assert _student(task="mrpc", mode="teacher") == ("2", 0.0)


def test_cli_leaves_depth_and_hidden_weight_to_the_version():
    from augpro.cli import build_parser, config_from_args

    def parsed(*flags: str) -> TrainConfig:
        ns = build_parser().parse_args(["distill", "--teacher", "t", "--output-dir", "o", *flags])
        return config_from_args(ns, "kd")

    assert (parsed("--task", "mrpc").student_layers, parsed("--task", "mrpc").hidden_weight) == ("4", 1.0)
    assert (parsed("--task", "sst2").student_layers, parsed("--task", "sst2").hidden_weight) == ("2", 0.0)
    cfg = parsed("--task", "mrpc", "--defaults-version", "3")
    assert (cfg.student_layers, cfg.hidden_weight) == ("2", 0.0)
    cfg = parsed("--task", "rte", "--student-layers", "2", "--hidden-weight", "0")
    assert (cfg.student_layers, cfg.hidden_weight) == ("2", 0.0)


def _run(tmp_path: Path, name: str, base: dict, task: str = "mrpc"):
    from augpro.study import load_study

    path = tmp_path / f"{name}.yaml"
    grid = [{"task": task, "mode": "kd", "augment": "none", "seed": 0, "teacher": "some/teacher"}]
    path.write_text(yaml.safe_dump({"output_dir": "o", "base": base, "grids": grid}))
    return load_study(str(path)).runs[0]


def test_run_ids_of_pinned_versions_do_not_see_the_new_defaults(tmp_path):
    from augpro.study_grid import _hashed_view

    pinned = _run(tmp_path, "v2", {"defaults-version": 2})
    explicit = _run(tmp_path, "v2e", {"defaults-version": 2, "student-layers": 2, "hidden-weight": 0.0})
    assert pinned.run_id == explicit.run_id  # what version 2 leaves implicit is what grids spelled out
    assert not {"student_layers", "hidden_weight"} & set(_hashed_view(pinned.settings))
    v4 = _run(tmp_path, "v4", {})
    assert (v4.settings["student_layers"], v4.settings["hidden_weight"]) == ("4", 1.0)
    assert {"student_layers": "4", "hidden_weight": 1.0}.items() <= _hashed_view(v4.settings).items()
    # a single-sentence run of version 4 differs from version 3's only by the version itself
    v3_sst2, v4_sst2 = _run(tmp_path, "s3", {"defaults-version": 3}, "sst2"), _run(tmp_path, "s4", {}, "sst2")
    drop = {"defaults_version"}
    assert ({k: v for k, v in _hashed_view(v3_sst2.settings).items() if k not in drop}
            == {k: v for k, v in _hashed_view(v4_sst2.settings).items() if k not in drop})


def test_a_pair_run_trains_the_four_layer_student_with_hidden_state_kd(tokenizer, rte, tmp_path):
    """Real RTE rows, tiny random 6-layer models over the real vocabulary: ``augpro.distill`` with
    nothing said about the student keeps 4 layers and logs the hidden-state term."""
    import augpro

    base = tmp_path / "base"
    tokenizer.save_pretrained(base)
    tiny_classifier(layers=6, seed=3).save_pretrained(base)
    for name, rows in (("train", rte.train.select(range(32))), ("dev", rte.dev.select(range(16)))):
        with open(tmp_path / f"{name}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["sentence1", "sentence2", "label"])
            w.writerows((*t, y) for t, y in zip(rows.texts, rows.labels))
    data = dict(train_file=str(tmp_path / "train.csv"), dev_file=str(tmp_path / "dev.csv"),
                text_columns="sentence1,sentence2", label_column="label", max_steps=2, batch_size=8,
                max_length=64, progress=False, save_checkpoints=False, eval_every_epoch=False)
    augpro.train_teacher(model=str(base), output_dir=str(tmp_path / "teacher"), **data)
    result = augpro.distill(teacher=str(tmp_path / "teacher"), student=str(base), output_dir=str(tmp_path / "kd"),
                            **data)
    assert result["layers"] == 4
    assert (result["settings"]["student_layers"], result["settings"]["hidden_weight"]) == ("4", 1.0)
    from transformers import BertForSequenceClassification

    assert BertForSequenceClassification.from_pretrained(tmp_path / "kd").config.num_hidden_layers == 4


def test_a_teacher_with_another_tokenizer_drops_only_the_default_hidden_term(capsys):
    """Hidden states are compared position by position, so the version's hidden-state default is
    switched off (with a note) when the teacher tokenizes differently; a chosen weight is left for
    the trainer to refuse, and a shared tokenizer changes nothing."""
    from types import SimpleNamespace

    from augpro.runner import fit_defaults_to_models

    cross, shared = SimpleNamespace(retokenize=object()), SimpleNamespace(retokenize=None)
    cfg = TrainConfig(task="mrpc", mode="kd", teacher="t")
    assert fit_defaults_to_models(cfg, shared) is cfg
    fitted = fit_defaults_to_models(cfg, cross)
    assert (fitted.student_layers, fitted.hidden_weight) == ("4", 0.0)
    assert "hidden-state KD" in capsys.readouterr().err
    chosen = TrainConfig(task="mrpc", mode="kd", teacher="t", hidden_weight=0.5)
    assert fit_defaults_to_models(chosen, cross) is chosen
    single = TrainConfig(task="sst2", mode="kd", teacher="t")
    assert fit_defaults_to_models(single, cross) is single and not capsys.readouterr().err
