"""`augpro study` (grid expansion, resumable results file, teachers) and `augpro report`.

Most tests replace the training function with a fast fake that writes a ``metrics.json``; one
slow test runs ``configs/smoke.yaml`` for real.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
import yaml

from augpro import study as study_mod
from augpro.config import DEFAULTS_VERSION
from augpro.errors import UserError
from augpro.report import write_report
from augpro.study import append_line, load_study, read_results, repair_results, run_study

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- a fake runner


def fake_result(cfg) -> dict:
    """A deterministic, plausible metrics dict for a config (no training)."""
    s = cfg.to_dict()
    h = int(hashlib.sha256(json.dumps([s["seed"], s["task"], s["mode"], s["augment"], s["degree"], s["copies"],
                                       s["train_size"]], default=str).encode()).hexdigest()[:8], 16)
    noise = (h % 1000) / 1000 * 0.02
    degree = s["degree"] or 0.0
    best = 0.3 if s["mode"] == "kd" else 0.1
    score = 0.8 + 0.05 * (s["mode"] == "kd") - 0.2 * (degree - best) ** 2 + 0.01 * (s["copies"] - 1) + noise
    if s["mode"] == "teacher":
        score = 0.9 + noise
    aug = {"method": s["augment"]}
    if s["augment"] != "none":
        aug["realised_degree"] = degree
        if s["mode"] == "kd":
            aug["label_flip_rate"] = degree / 3
    return {"mode": s["mode"], "task": s["task"], "dev": {"accuracy": score, "score": score}, "runtime_s": 1.5,
            "train_runtime_s": 1.0, "steps": 8, "augmentation": aug, "settings": s,
            "teacher_fingerprint": f"weights-of-{s['teacher']}" if s["mode"] == "kd" else None}


class FakeRunner:
    """Records calls; writes the files a real run leaves behind."""

    def __init__(self, fail_on: int | None = None, interrupt_on: int | None = None) -> None:
        self.calls: list[dict] = []
        self.fail_on = fail_on
        self.interrupt_on = interrupt_on

    def __call__(self, cfg) -> dict:
        self.calls.append(cfg.to_dict())
        n = len(self.calls)
        if self.interrupt_on == n:
            raise KeyboardInterrupt
        if self.fail_on == n:
            raise RuntimeError("boom")
        if cfg.mode == "kd":
            assert Path(cfg.teacher, "metrics.json").is_file(), "KD run started before its teacher finished"
        out = Path(cfg.output_dir)
        assert out.is_dir() and not (out / "metrics.json").exists()
        result = fake_result(cfg)
        (out / "model.safetensors").write_bytes(b"\0" * 64)
        (out / "runs").mkdir(exist_ok=True)
        (out / "runs" / "events.tfevents").write_bytes(b"tb")
        (out / "metrics.json").write_text(json.dumps(result))
        print({"loss": 0.5})  # what Trainer's PrinterCallback prints
        return result

    def students(self) -> list[dict]:
        return [c for c in self.calls if c["mode"] != "teacher"]

    def teachers(self) -> list[dict]:
        return [c for c in self.calls if c["mode"] == "teacher"]


@pytest.fixture
def fake(monkeypatch) -> FakeRunner:
    runner = FakeRunner()
    monkeypatch.setattr(study_mod, "run_training", runner)
    return runner


def write_yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


SMALL = {
    "base": {"train-size": 100, "max_steps": 4, "student_layers": 1},
    "teacher": {"epochs": 1},
    "grids": [
        {"task": "sst2", "mode": ["kd", "ft"], "augment": "none", "seed": [0, 1]},
        {"task": "sst2", "mode": ["kd", "ft"], "augment": ["knn", "augpro-mix"], "degree": [0.1, 0.3],
         "seed": [0, 1]},
    ],
}


@pytest.fixture
def small(tmp_path) -> Path:
    return write_yaml(tmp_path / "study.yaml", {"output_dir": str(tmp_path / "out"), **SMALL})


def result_lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


# --------------------------------------------------------------------------- grid


def test_grid_expansion_dedup_and_coercion(tmp_path):
    doc = {"output_dir": str(tmp_path / "o"),
           "base": {"train-size": 100, "student_layers": 2, "epochs": 2},
           "grids": [
               # `none` ignores degree/copies: these 2x2 points collapse to one run per mode
               {"task": "sst2", "mode": ["kd", "ft"], "augment": "none", "degree": [0.1, 0.3], "copies": [1, 4]},
               {"task": "sst2", "mode": "kd", "augment": "knn", "degree": [0.1, 0.3], "copies": [1, 4]},
               {"task": "sst2", "mode": "kd", "augment": "knn", "degree": 0.3, "copies": 4},  # a duplicate
           ]}
    study = load_study(write_yaml(tmp_path / "s.yaml", doc))
    assert len(study.runs) == 2 + 4
    assert len({r.run_id for r in study.runs}) == len(study.runs)
    s = study.runs[0].settings
    assert s["student_layers"] == "2" and s["epochs"] == 2.0 and s["train_size"] == 100
    assert all(r.settings["save_checkpoints"] is False and r.settings["progress"] is False for r in study.runs)
    none_runs = [r for r in study.runs if r.settings["augment"] == "none"]
    assert all(r.settings["degree"] is None and r.settings["copies"] == 1 for r in none_runs)
    # one teacher for the single (task, size, seed); FT runs have none
    assert len(study.teachers) == 1
    assert all((r.teacher is None) == (r.settings["mode"] == "ft") for r in study.runs)
    # ids are stable, do not depend on the output folder, and ignore settings left at their default
    again = load_study(tmp_path / "s.yaml", output_dir=str(tmp_path / "elsewhere"))
    assert [r.run_id for r in again.runs] == [r.run_id for r in study.runs]
    doc["base"]["weight-decay"] = 0.01  # the default, spelled out
    same = load_study(write_yaml(tmp_path / "s2.yaml", doc))
    assert [r.run_id for r in same.runs] == [r.run_id for r in study.runs]
    doc["base"]["weight-decay"] = 0.02
    other = load_study(write_yaml(tmp_path / "s3.yaml", doc))
    assert not {r.run_id for r in other.runs} & {r.run_id for r in study.runs}


def test_runs_ordered_seed_first(small):
    study = load_study(small)
    seeds = [r.settings["seed"] for r in study.runs]
    assert seeds == sorted(seeds)
    assert len(study.runs) == 2 * 2 + 2 * 2 * 2 * 2


@pytest.mark.parametrize("section", ["base", "teacher", "grid", "top"])
def test_unknown_key_is_a_user_error(tmp_path, section):
    doc = json.loads(json.dumps(SMALL))
    if section == "base":
        doc["base"]["trian-size"] = 5
    elif section == "teacher":
        doc["teacher"]["epocs"] = 1
    elif section == "grid":
        doc["grids"][1]["degre"] = [0.1]
    else:
        doc["grid"] = []
    path = write_yaml(tmp_path / "bad.yaml", {"output_dir": str(tmp_path / "o"), **doc})
    with pytest.raises(UserError) as err:
        load_study(path)
    msg = str(err.value)
    assert str(path) in msg
    assert {"base": "trian-size", "teacher": "epocs", "grid": "degre", "top": "grid"}[section] in msg


@pytest.mark.parametrize("grid, fragment", [
    ({"degree": 1.5, "augment": "knn"}, "degree"),
    ({"augment": "mixkd", "degree": 0.3}, "mixkd"),
    ({"augment": "no-such-method"}, "no-such-method"),
    ({"mode": "teacher"}, "teacher"),
    ({"copies": "four", "augment": "knn"}, "copies"),
    ({"seed": []}, "empty"),
])
def test_bad_values_are_user_errors(tmp_path, grid, fragment):
    path = write_yaml(tmp_path / "bad.yaml", {"output_dir": str(tmp_path / "o"), "grids": [grid]})
    with pytest.raises(UserError, match=fragment):
        load_study(path)


def test_yaml_is_never_executed(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("output_dir: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(UserError):
        load_study(path)
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_dry_run_lists_and_writes_nothing(small, tmp_path, fake, capsys):
    assert run_study(str(small), dry_run=True) == 0
    out = capsys.readouterr().out
    n_teachers = len(load_study(small).teachers)
    assert "20 runs" in out and f", {n_teachers} teacher{'s' * (n_teachers != 1)}, output" in out
    assert not (tmp_path / "out").exists() and not fake.calls


# --------------------------------------------------------------------------- running and resuming


def test_run_writes_lines_and_deletes_weights(small, tmp_path, fake, capsys):
    assert run_study(str(small)) == 0
    study = load_study(small)
    rows = read_results(study.results_path)
    assert [r["run_id"] for r in rows] == [r.run_id for r in study.runs]
    row = next(r for r in rows if r["mode"] == "kd" and r["augment"] == "knn")
    for key in ("run_id", "settings", "task", "mode", "augment", "degree", "copies", "train_size", "seed", "dev",
                "score", "realised_degree", "label_flip_rate", "augmentation", "runtime_s", "teacher_dev",
                "finished_at"):
        assert key in row
    assert row["augmentation"] == {"method": "knn", "realised_degree": row["realised_degree"],
                                   "label_flip_rate": row["label_flip_rate"]}
    assert row["score"] == row["dev"]["score"] and row["teacher_dev"]["score"] > 0.89
    assert row["teacher_weights"] == f"weights-of-{row['settings']['teacher']}"  # which weights taught it
    assert all(r["teacher_weights"] is None for r in rows if r["mode"] == "ft")
    assert row["settings"]["teacher"].startswith(str(tmp_path / "out" / "teachers"))
    folder = tmp_path / "out" / "runs" / row["run_id"]
    assert sorted(p.name for p in folder.iterdir()) == ["metrics.json", "train.log"]
    assert "loss" in (folder / "train.log").read_text()  # the trainer's prints went to the log, not the terminal
    out = capsys.readouterr().out
    assert "[20/20]" in out and "{'loss'" not in out


def test_resume_skips_finished_runs(small, fake):
    assert run_study(str(small), limit=3) == 0
    assert len(fake.students()) == 3
    first = [c["output_dir"] for c in fake.students()]
    assert run_study(str(small)) == 0
    assert len(fake.students()) == 20
    assert not set(first) & {c["output_dir"] for c in fake.students()[3:]}
    fake.calls.clear()
    assert run_study(str(small)) == 0
    assert fake.calls == []
    assert len(result_lines(load_study(small).results_path)) == 20


def test_only_reruns_one_cell_of_the_grid_elsewhere_with_its_run_ids(small, tmp_path, fake, capsys):
    study = load_study(small)
    cell = [r for r in study.runs if r.settings["mode"] == "kd" and r.settings["augment"] == "knn"
            and r.settings["degree"] == 0.3 and r.settings["copies"] == 1]
    assert len(cell) > 1  # one cell, several seeds
    words = f"kd knn degree=0.3 seed={cell[0].settings['seed']} n={cell[0].settings['train_size']}"
    named = [r for r in cell if r.settings["task"] == cell[0].settings["task"]
             and r.settings["seed"] == cell[0].settings["seed"]
             and r.settings["train_size"] == cell[0].settings["train_size"]]
    other = tmp_path / "check"
    assert run_study(str(small), output_dir=str(other), only=words, dry_run=True) == 0
    listed = capsys.readouterr().out
    assert f"{len(named)} run{'s' * (len(named) != 1)} (0 finished, {len(named)} to run)" in listed
    assert all(r.run_id in listed for r in named) and fake.calls == []
    assert run_study(str(small), output_dir=str(other), only=words) == 0
    rows = read_results(other / "results.jsonl")
    assert sorted(r["run_id"] for r in rows) == sorted(r.run_id for r in named)  # the grid's own ids
    assert len(fake.students()) == len(named)
    assert not study.results_path.exists()  # the grid's own results file is untouched
    # a run id names exactly that run; words that name nothing, and --prune with --only, are errors
    fake.calls.clear()
    assert run_study(str(small), only=study.runs[-1].run_id) == 0
    assert [r["run_id"] for r in read_results(study.results_path)] == [study.runs[-1].run_id]
    with pytest.raises(UserError, match="names none of the 20 runs"):
        run_study(str(small), only="kd no-such-method")
    with pytest.raises(UserError, match="--prune"):
        run_study(str(small), only="kd", prune=True)


def test_reuse_takes_finished_runs_of_another_study_instead_of_training(small, tmp_path, fake, capsys):
    assert run_study(str(small), limit=5) == 0              # the other study: 5 runs finished
    source = load_study(small)
    done = {json.loads(line)["run_id"] for line in result_lines(source.results_path)}
    # a second study with the same runs (so the same ids) plus one new cell, reusing the first
    doc = {"output_dir": str(tmp_path / "second"), "reuse": [small.name], **SMALL}
    doc["grids"] = [*SMALL["grids"], {"task": "sst2", "mode": "kd", "augment": "none", "seed": 0, "temperature": 2.0}]
    second = write_yaml(tmp_path / "second.yaml", doc)
    study = load_study(second)
    assert study.reuse == [source.results_path]
    assert run_study(str(second), dry_run=True) == 0
    assert "21 runs (0 finished, 21 to run, 5 of them finished in a study it reuses)" in capsys.readouterr().out
    fake.calls.clear()
    assert run_study(str(second)) == 0
    trained = {c["output_dir"].rsplit("/", 1)[-1] for c in fake.students()}
    assert len(trained) == 16 and not trained & done        # the 5 reused runs were not trained again
    rows = {json.loads(line)["run_id"]: json.loads(line) for line in result_lines(study.results_path)}
    assert set(rows) == {r.run_id for r in study.runs}
    assert {rid for rid, row in rows.items() if "reused_from" in row} == done
    original = {json.loads(line)["run_id"]: json.loads(line) for line in result_lines(source.results_path)}
    for rid in done:                                          # the very same line, marked
        assert {k: v for k, v in rows[rid].items() if k != "reused_from"} == original[rid]
        assert rows[rid]["reused_from"] == str(source.results_path)


def test_reuse_errors(tmp_path):
    for value, fragment in ((["missing.yaml"], "not found"), ([3], "list of study config paths"),
                            (["self.yaml"], "the config itself")):
        cfg = write_yaml(tmp_path / "self.yaml", {"output_dir": str(tmp_path / "o"), "reuse": value, **SMALL})
        with pytest.raises(UserError, match=fragment):
            load_study(cfg)


def test_torn_last_line_is_repaired(small, fake, capsys):
    run_study(str(small), limit=4)
    path = load_study(small).results_path
    good = path.read_bytes()
    with open(path, "ab") as fh:
        fh.write(b'{"run_id": "deadbeef", "score": 0.')  # a write cut short by a kill
    assert len(read_results(path)) == 4  # readers ignore it
    assert repair_results(path) and path.read_bytes() == good
    with open(path, "ab") as fh:
        fh.write(b'{"run_id": "deadbeef", "sco')
    assert run_study(str(small)) == 0
    assert "torn" in capsys.readouterr().err
    lines = result_lines(path)
    assert len(lines) == 20 and all(line.endswith(b"\n") for line in lines)
    assert all(json.loads(line)["run_id"] != "deadbeef" for line in lines)


def test_duplicate_lines_are_ignored(small, fake, tmp_path):
    run_study(str(small), limit=2)
    path = load_study(small).results_path
    lines = result_lines(path)
    with open(path, "ab") as fh:
        fh.write(lines[0] + b"\n")  # a duplicate and a blank line
    assert len(read_results(path)) == 2
    fake.calls.clear()
    run_study(str(small))
    assert len(fake.students()) == 18
    assert len(read_results(path)) == 20
    write_report(str(path), str(tmp_path / "rep"))
    assert "20 finished runs" in (tmp_path / "rep" / "README.md").read_text()


def test_teacher_trained_once_per_task_size_seed(tmp_path, fake):
    doc = {"output_dir": str(tmp_path / "out"), "teacher": {"epochs": 2},
           "grids": [{"task": ["sst2", "rte"], "train_size": [50, 100], "mode": ["kd", "ft"],
                      "augment": ["none", "knn"], "seed": [0, 1]}]}
    path = write_yaml(tmp_path / "t.yaml", doc)
    run_study(str(path), limit=5)
    run_study(str(path))
    teachers = fake.teachers()
    keys = [(t["task"], t["train_size"], t["seed"]) for t in teachers]
    assert sorted(keys) == sorted({(t, n, s) for t in ("sst2", "rte") for n in (50, 100) for s in (0, 1)})
    assert all(t["epochs"] == 2.0 and t["augment"] == "none" for t in teachers)
    folders = sorted(p.name for p in (tmp_path / "out" / "teachers").iterdir())
    assert len(folders) == 8 and folders[0].startswith("rte-n100-s0-")
    # teacher weights are kept (students need them); a rerun trains none again
    assert all((tmp_path / "out" / "teachers" / f / "model.safetensors").exists() for f in folders)
    for row in read_results(tmp_path / "out" / "results.jsonl"):
        if row["mode"] == "kd":
            t = Path(row["settings"]["teacher"])
            assert t.name.startswith(f"{row['task']}-n{row['train_size']}-s{row['seed']}-")


def test_grid_teacher_section_changes_only_that_grids_teachers(tmp_path, fake):
    out = str(tmp_path / "out")
    grids = [{"task": "sst2", "mode": ["kd", "ft"], "augment": ["none", "knn"], "seed": 0},
             {"task": "rte", "mode": ["kd", "ft"], "augment": ["none", "knn"], "seed": 0}]
    plain = load_study(write_yaml(tmp_path / "a.yaml", {"output_dir": out, "teacher": {"epochs": 2}, "grids": grids}))
    longer = [grids[0], {**grids[1], "teacher": {"max-steps": 30, "learning-rate": 1e-4}}]
    path = write_yaml(tmp_path / "b.yaml", {"output_dir": out, "teacher": {"epochs": 2}, "grids": longer})
    study = load_study(path)
    ids_a = {r.describe(): r.run_id for r in plain.runs}
    ids_b = {r.describe(): r.run_id for r in study.runs}
    assert ids_a.keys() == ids_b.keys()
    changed = sorted(k for k in ids_a if ids_a[k] != ids_b[k])
    # only the RTE KD runs change (their teacher changed); SST-2 and every FT run keep their ids
    assert changed == sorted(k for k in ids_a if k.startswith("rte") and " kd " in k) and len(changed) == 2
    run_study(str(path))
    by_task = {t["task"]: t for t in fake.teachers()}
    assert by_task["rte"]["max_steps"] == 30 and by_task["rte"]["learning_rate"] == 1e-4
    assert by_task["rte"]["epochs"] == 2.0  # the top-level section still applies
    assert by_task["sst2"]["max_steps"] == plain.teachers[next(iter(plain.teachers))].settings["max_steps"]
    # a grid-level teacher section is checked like the top-level one
    bad = [grids[0], {**grids[1], "teacher": {"mode": "kd"}}]
    with pytest.raises(UserError, match=r"grids\[1\]\.teacher"):
        load_study(write_yaml(tmp_path / "c.yaml", {"output_dir": out, "grids": bad}))
    bad = [grids[0], {**grids[1], "teacher": {"max-stepz": 3}}]
    with pytest.raises(UserError, match="max-stepz"):
        load_study(write_yaml(tmp_path / "d.yaml", {"output_dir": out, "grids": bad}))


def test_prune_moves_lines_of_runs_no_longer_in_the_config(small, tmp_path, fake, capsys):
    run_study(str(small))
    results = load_study(small).results_path
    before = read_results(results)
    assert len(before) == 20
    # the config changes: the seed-1 runs leave it
    doc = yaml.safe_load(small.read_text())
    for g in doc["grids"]:
        g["seed"] = [0]
    write_yaml(small, doc)
    capsys.readouterr()
    assert run_study(str(small)) == 0  # nothing to run; the stale lines are reported, not touched
    err = capsys.readouterr().err
    assert "10 line(s)" in err and "--prune" in err
    assert len(read_results(results)) == 20
    assert run_study(str(small), dry_run=True, prune=True) == 0
    assert "would move 10 line(s)" in capsys.readouterr().out and len(read_results(results)) == 20
    assert run_study(str(small), prune=True) == 0
    kept, moved = read_results(results), read_results(results.with_name("results.pruned.jsonl"))
    assert len(kept) == 10 and {r["seed"] for r in kept} == {0}
    assert len(moved) == 10 and {r["seed"] for r in moved} == {1}
    assert sorted(r["run_id"] for r in kept + moved) == sorted(r["run_id"] for r in before)
    assert run_study(str(small), prune=True) == 0  # idempotent
    assert len(read_results(results)) == 10 and len(read_results(results.with_name("results.pruned.jsonl"))) == 10
    capsys.readouterr()
    run_study(str(small))
    assert "belong to no run" not in capsys.readouterr().err


def test_stale_teacher_and_run_folders_are_redone(small, tmp_path, fake):
    study = load_study(small)
    first = study.runs[0]
    stale = Path(first.settings["output_dir"])
    stale.mkdir(parents=True)
    (stale / "checkpoint-3").mkdir()
    teacher = next(iter(study.teachers.values()))
    teacher.folder.mkdir(parents=True)
    (teacher.folder / "half-written").write_text("x")
    run_study(str(small))
    assert not (stale / "checkpoint-3").exists() and (stale / "metrics.json").exists()
    assert not (teacher.folder / "half-written").exists() and (teacher.folder / "metrics.json").exists()


def test_ctrl_c_keeps_finished_lines_and_exits_130(small, monkeypatch, capsys):
    runner = FakeRunner(interrupt_on=5)
    monkeypatch.setattr(study_mod, "run_training", runner)
    assert run_study(str(small)) == 130
    err = capsys.readouterr().err
    assert "Resume with: augpro study" in err
    path = load_study(small).results_path
    n = len(read_results(path))
    assert n == 5 - len(runner.teachers()) - 1
    monkeypatch.setattr(study_mod, "run_training", FakeRunner())
    assert run_study(str(small)) == 0
    assert len(read_results(path)) == 20 == len(result_lines(path))


def test_failed_run_is_reported_and_rerun(small, monkeypatch, capsys):
    monkeypatch.setattr(study_mod, "run_training", FakeRunner(fail_on=3))
    with pytest.raises(RuntimeError):
        run_study(str(small))
    assert "failed" in capsys.readouterr().err
    monkeypatch.setattr(study_mod, "run_training", FakeRunner())
    assert run_study(str(small)) == 0
    assert len(read_results(load_study(small).results_path)) == 20


def test_append_line_is_one_complete_line(tmp_path):
    path = tmp_path / "r.jsonl"
    for i in range(3):
        append_line(path, {"run_id": str(i), "x": "é" * 1000})
    lines = result_lines(path)
    assert len(lines) == 3 and all(json.loads(line)["x"] == "é" * 1000 for line in lines)


KILL_SCRIPT = r"""
import json, random, sys, time, types
from pathlib import Path

# keep the subprocess light: the method names without importing torch
stub = types.ModuleType("augpro.augment")
stub.METHODS = ("none", "knn", "mask", "random", "synonym", "eda", "mixkd", "fgsm", "augpro-mix", "augpro-fgsm")
sys.modules["augpro.augment"] = stub
import augpro.study as st

def fake(cfg):
    out = Path(cfg.output_dir)
    time.sleep(random.uniform(0.0, 0.03))
    (out / "model.safetensors").write_bytes(b"\0" * 4096)
    res = {"mode": cfg.mode, "task": cfg.task, "dev": {"score": 0.5 + cfg.seed / 100}, "runtime_s": 0.01,
           "augmentation": {"method": cfg.augment}}
    (out / "metrics.json").write_text(json.dumps(res))
    return res

st.run_training = fake
code = st.run_study(sys.argv[1])
assert "torch" not in sys.modules
sys.exit(code)
"""


def test_sigkill_at_random_moments_loses_nothing(tmp_path):
    doc = {"output_dir": str(tmp_path / "out"),
           "grids": [{"task": "sst2", "train_size": [50, 100], "mode": ["kd", "ft"], "augment": ["none", "knn"],
                      "degree": [0.1, 0.3, 0.5], "seed": list(range(6))}]}
    cfg = write_yaml(tmp_path / "kill.yaml", doc)
    total = len(load_study(cfg).runs)
    script = tmp_path / "fake_study.py"
    script.write_text(KILL_SCRIPT)
    results = tmp_path / "out" / "results.jsonl"
    rng = random.Random(0)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    kills = 0
    for _ in range(10):
        before = len(result_lines(results)) if results.exists() else 0
        if before >= total:
            break
        proc = subprocess.Popen([sys.executable, str(script), str(cfg)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:  # wait until it is writing lines
            if results.exists() and len(result_lines(results)) > before:
                break
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        # between kills every line is complete and unique
        data = results.read_bytes()
        lines = data.splitlines(keepends=True)
        complete = [line for line in lines if line.endswith(b"\n")]
        ids = [json.loads(line)["run_id"] for line in complete]
        assert len(ids) == len(set(ids))
    assert kills >= 5
    done = subprocess.run([sys.executable, str(script), str(cfg)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    data = results.read_bytes()
    assert data.endswith(b"\n")
    lines = data.splitlines()
    ids = [json.loads(line)["run_id"] for line in lines]
    assert len(ids) == len(set(ids)) == total
    assert set(ids) == {r.run_id for r in load_study(cfg).runs}
    for rid in ids:
        folder = tmp_path / "out" / "runs" / rid
        assert (folder / "metrics.json").exists() and not (folder / "model.safetensors").exists()


def test_sigterm_exits_130(tmp_path):
    doc = {"output_dir": str(tmp_path / "out"),
           "grids": [{"task": "sst2", "mode": "ft", "augment": "knn", "degree": [0.1, 0.3, 0.5],
                      "seed": list(range(40))}]}
    cfg = write_yaml(tmp_path / "term.yaml", doc)
    script = tmp_path / "fake_study.py"
    script.write_text(KILL_SCRIPT.replace("random.uniform(0.0, 0.03)", "0.05"))
    proc = subprocess.Popen([sys.executable, str(script), str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    results = tmp_path / "out" / "results.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (results.exists() and results.stat().st_size):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Resume with" in err
    assert all(line.endswith(b"\n") for line in result_lines(results))


# --------------------------------------------------------------------------- report


DEGREE_STUDY = {
    "base": {"max_steps": 4},
    "grids": [
        {"task": ["sst2", "rte"], "train_size": [500, 2000], "mode": ["kd", "ft"], "augment": "none",
         "seed": [0, 1, 2]},
        {"task": ["sst2", "rte"], "train_size": [500, 2000], "mode": ["kd", "ft"], "augment": "knn",
         "degree": [0.0, 0.1, 0.3, 0.5], "copies": [1, 4], "seed": [0, 1, 2]},
        {"task": "sst2", "train_size": 500, "mode": "kd", "augment": ["augpro-mix", "mixkd", "eda"],
         "seed": [0, 1, 2]},
    ],
}


@pytest.fixture
def study_results(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(study_mod, "run_training", FakeRunner())
    cfg = write_yaml(tmp_path / "deg.yaml", {"output_dir": str(tmp_path / "out"), **DEGREE_STUDY})
    assert run_study(str(cfg)) == 0
    return tmp_path / "out" / "results.jsonl"


def _is_png(path: Path) -> bool:
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    pos, chunks = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            return False
        chunks.append(kind)
        pos += 12 + length
    return chunks[0] == b"IHDR" and chunks[-1] == b"IEND" and b"tIME" not in chunks


def test_report_is_byte_for_byte_reproducible(study_results, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_report(str(study_results), str(a))
    # same content, other line order and a duplicate: same report
    lines = result_lines(study_results)
    shuffled = tmp_path / "shuffled.jsonl"
    random.Random(1).shuffle(lines)
    shuffled.write_bytes(b"".join(lines + lines[:3]))
    write_report(str(shuffled), str(b))
    files_a = sorted(p.name for p in a.iterdir())
    assert files_a == sorted(p.name for p in b.iterdir())
    for name in files_a:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    write_report(str(study_results), str(a))  # rewriting in place changes nothing
    for name in files_a:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_report_tables_and_figures(study_results, tmp_path):
    out = tmp_path / "rep"
    write_report(str(study_results), str(out))
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["README.md", "methods_sst2.png", "methods_rte.png", "degree_sst2.png", "degree_rte.png",
                            "best_degree_sst2.png", "best_degree_rte.png", "copies_sst2.png", "copies_rte.png",
                            "paired_sst2.png", "paired_rte.png"])
    for name in names:
        if name.endswith(".png"):
            assert _is_png(out / name), name
    md = (out / "README.md").read_text()
    assert "| method | SST-2 n=500 | SST-2 n=2,000 | RTE n=500 | RTE n=2,000 |" in md
    assert "(n=3)" in md and "**" in md and " ± " in md
    assert "KD knn (degree 0.3, ×4)" in md and "| teacher |" in md
    assert "### SST-2: knn, dev score vs degree" in md and "Best degree" in md
    for name in names:
        if name.endswith(".png"):
            assert f"]({name})" in md
    # the fake's optimum: KD best at 0.3, FT at 0.1
    best = md.split("Best degree per training-set size, SST-2, knn:")[1].split("\n\n")[1]
    kd_row = next(line for line in best.splitlines() if line.startswith("| KD | 1 |"))
    assert "0.3 (" in kd_row
    # copies: 4 vs 1 per mode and size, recomputed here from the JSONL
    gain = md.split("4 copies vs 1, SST-2, knn:")[1].split("\n\n")[1].splitlines()
    assert gain[0] == "| mode | n=500 | n=2,000 |"
    rows = read_results(study_results)
    t2 = 4.302652729749464  # Student t, 97.5 % quantile, 2 degrees of freedom (3 paired seeds)

    def seed_scores(mode, size, copies, degree):
        vals = {r["seed"]: r["score"] * 100 for r in rows if (r["task"], r["mode"], r["augment"], r["train_size"],
                                                              r["copies"], r["degree"]) ==
                ("sst2", mode, "knn", size, copies, degree)}
        assert len(vals) == 3
        return vals

    def paired(a, b):  # mean, low, high of the per-seed differences, recomputed by hand
        d = [a[s] - b[s] for s in sorted(a)]
        m = sum(d) / 3
        h = t2 * (sum((x - m) ** 2 for x in d) / 2) ** 0.5 / 3 ** 0.5
        return m, m - h, m + h

    for mode in ("kd", "ft"):
        line = next(x for x in gain if x.startswith(f"| {mode.upper()} |"))
        for size in (500, 2000):
            stats = [paired(seed_scores(mode, size, 4, d), seed_scores(mode, size, 1, d)) for d in (0.1, 0.3, 0.5)]
            diffs = [m for m, _, _ in stats]
            ahead, behind = sum(lo > 0 for _, lo, _ in stats), sum(hi < 0 for _, _, hi in stats)
            marks = [f"{ahead} ahead"] * bool(ahead) + [f"{behind} behind"] * bool(behind)
            text = f"{sum(diffs) / 3:+.1f} ({sum(x > 0 for x in diffs)}/3" + (f"; {', '.join(marks)})" if marks else ")")
            assert text in line
    # best degree: its paired lead over the runner-up (by mean), then over each other degree above 0
    # (claim 3's comparisons), each with its interval
    means = {d: sum(seed_scores("kd", 500, 1, d).values()) / 3 for d in (0.0, 0.1, 0.3, 0.5)}
    ranked = sorted(means, key=lambda d: -means[d])
    first, second = ranked[:2]
    m, lo, hi = paired(seed_scores("kd", 500, 1, first), seed_scores("kd", 500, 1, second))
    assert f"{first:g} ({means[first]:.1f}; {m:+.1f} [{lo:+.1f}, {hi:+.1f}] over {second:g}, " in kd_row
    rest = [d for d in ranked[2:] if d > 0]
    assert rest, "the fake's sweep has a third degree above 0"
    for d in rest:
        m, lo, hi = paired(seed_scores("kd", 500, 1, first), seed_scores("kd", 500, 1, d))
        assert f"; {m:+.1f} [{lo:+.1f}, {hi:+.1f}] over {d:g}, " in kd_row
    if 0.0 in ranked[2:]:
        assert " over 0, " not in kd_row  # no augmentation is named only as the runner-up


def test_report_skips_figures_the_data_cannot_support(tmp_path, monkeypatch):
    monkeypatch.setattr(study_mod, "run_training", FakeRunner())
    cfg = write_yaml(tmp_path / "one.yaml", {"output_dir": str(tmp_path / "out"),
                                             "grids": [{"mode": "kd", "augment": "knn", "degree": 0.3}]})
    run_study(str(cfg))
    out = tmp_path / "rep"
    (out).mkdir()
    (out / "degree_old.png").write_bytes(b"stale")
    write_report(str(tmp_path / "out" / "results.jsonl"), str(out))
    assert sorted(p.name for p in out.iterdir()) == ["README.md"]


def test_report_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        write_report(str(tmp_path / "missing.jsonl"), str(tmp_path / "o"))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(UserError, match="no finished runs"):
        write_report(str(empty), str(tmp_path / "o"))


def test_cli_dispatch(small, fake, tmp_path, capsys):
    from augpro.cli import main

    assert main(["study", str(small), "--dry-run"]) == 0
    assert "20 runs" in capsys.readouterr().out
    assert main(["study", str(small), "--limit", "2"]) == 0
    assert main(["report", str(tmp_path / "out" / "results.jsonl"), "--output", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "README.md").exists()
    bad = write_yaml(tmp_path / "bad.yaml", {"output_dir": "x", "base": {"nope": 1}})
    assert main(["study", str(bad)]) == 2
    assert "nope" in capsys.readouterr().err


# --------------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("name", ["smoke.yaml", "short-budget/degree-study.yaml", "short-budget/augpro-methods.yaml",
                                  "strong-teacher.yaml", "same-data.yaml", "pilot-curves.yaml",
                                  "intermediate-layers.yaml"])
def test_shipped_configs_are_valid(name):
    study = load_study(ROOT / "configs" / name)
    assert study.runs
    seeds = {r.settings["seed"] for r in study.runs}
    modes = {r.settings["mode"] for r in study.runs}
    name = name.split("/")[-1]
    if name == "smoke.yaml":
        assert len(study.runs) <= 8 and modes == {"kd", "ft"}
    elif name in ("strong-teacher.yaml", "same-data.yaml"):
        # deciding grids: at least the 5 paired seeds 0-4 in every cell (a cell may add seeds: more pairs),
        # validation split carved from the training rows
        cells: dict = {}
        for r in study.runs:
            s = r.settings
            cells.setdefault((s["train_size"], s["mode"], s["augment"], s["degree"], s["copies"]), set()).add(s["seed"])
        assert all(v >= {0, 1, 2, 3, 4} and v == set(range(len(v))) for v in cells.values())
        assert {r.settings["val_size"] for r in study.runs} == {2000} and modes == {"kd", "ft"}
        if name == "strong-teacher.yaml":
            assert all(t.shared for t in study.teachers.values()) and len(study.teachers) == 1
            assert study.runs[0].priority == 0 and study.runs[-1].priority == 3
    elif name == "intermediate-layers.yaml":
        # its baselines are strong-teacher.yaml's own runs (same ids), reused rather than retrained
        other = {r.run_id for r in load_study(ROOT / "configs" / "strong-teacher.yaml").runs}
        reused = [r for r in study.runs if r.run_id in other]
        assert len(reused) == 15 and {r.settings["task"] for r in reused} == {"sst2"}
        layered = [r for r in study.runs if r.settings["hidden_weight"]]
        assert layered and not any(r.settings["shared_forward"] for r in layered)
        assert {r.settings["student_layers"] for r in study.runs if r.settings["task"] == "mrpc"} == {"2", "4"}
    elif name == "pilot-curves.yaml":
        assert all(r.settings["eval_every_epoch"] for r in study.runs)
    else:
        assert len(seeds) == 3 and "kd" in modes
        assert all(r.settings["defaults_version"] == 1 for r in study.runs)
    if name == "degree-study.yaml":
        sst2_sizes = {r.settings["train_size"] for r in study.runs if r.settings["task"] == "sst2"}
        assert len(sst2_sizes) == 4 and min(sst2_sizes) == 500 and max(sst2_sizes) >= 16000
        degrees = {r.settings["degree"] for r in study.runs if r.settings["augment"] != "none"}
        assert degrees == {0.0, 0.1, 0.3, 0.5, 0.7}
        assert {r.settings["copies"] for r in study.runs} == {1, 4} and modes == {"kd", "ft"}
        assert len({r.settings["task"] for r in study.runs}) == 2
    if name == "augpro-methods.yaml":
        assert {r.settings["task"] for r in study.runs} == {"sst2", "mrpc", "rte", "cola", "stsb"}
        assert {r.settings["augment"] for r in study.runs} == {"none", "knn", "synonym", "eda", "mixkd", "fgsm",
                                                               "augpro-mix", "augpro-fgsm"}
        assert 1000 in {r.settings["train_size"] for r in study.runs}


# --------------------------------------------------------------------------- the real thing


@pytest.mark.slow
def test_smoke_config_for_real(tmp_path, data_dir):
    env = {**os.environ, "AUGPRO_DATA_DIR": data_dir}
    out = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "augpro.cli"]
    done = subprocess.run([*cmd, "study", str(ROOT / "configs" / "smoke.yaml"), "--output-dir", str(out)],
                          capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    study = load_study(ROOT / "configs" / "smoke.yaml", output_dir=str(out))
    rows = read_results(out / "results.jsonl")
    assert sorted(r["run_id"] for r in rows) == sorted(r.run_id for r in study.runs)
    for row in rows:
        assert 0.0 <= row["score"] <= 1.0 and row["runtime_s"] > 0
        if row["augment"] != "none":
            assert row["realised_degree"] is not None
            assert row["augmentation"]["method"] == row["augment"]
        if row["mode"] == "kd":
            assert row["teacher_dev"]["score"] > 0
    again = subprocess.run([*cmd, "study", str(ROOT / "configs" / "smoke.yaml"), "--output-dir", str(out)],
                           capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "are finished" in again.stdout
    rep = tmp_path / "report"
    done = subprocess.run([*cmd, "report", str(out / "results.jsonl"), "--output", str(rep)], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (rep / "README.md").exists()
    pngs = sorted(rep.glob("*.png"))
    assert pngs and all(_is_png(p) for p in pngs)


def test_report_conditions_split_rows_only_within_a_column(tmp_path, monkeypatch):
    monkeypatch.setattr(study_mod, "run_training", FakeRunner())
    doc = {"output_dir": str(tmp_path / "out"), "grids": [
        # max_length chosen per task: not a condition, one row per method
        {"task": "sst2", "max-length": 64, "mode": "kd", "augment": ["none", "knn"], "seed": [0, 1]},
        # (the same student depth as SST-2's: defaults version 4 would give RTE, a pair task, 4 layers)
        {"task": "rte", "max-length": 128, "student-layers": 2, "hidden-weight": 0.0, "mode": "kd",
         "augment": ["none", "knn"], "seed": [0, 1]},
        # two student sizes within the SST-2 column: a condition, shown in the row label
        {"task": "sst2", "max-length": 64, "mode": "kd", "augment": "none", "student-layers": 1, "seed": [0, 1]},
    ]}
    run_study(str(write_yaml(tmp_path / "c.yaml", doc)))
    write_report(str(tmp_path / "out" / "results.jsonl"), str(tmp_path / "rep"))
    md = (tmp_path / "rep" / "README.md").read_text()
    table = md.split("## Method comparison")[1].split("##")[0]
    rows = [line.split(" | ")[0].lstrip("| ") for line in table.splitlines() if line.startswith("| KD")]
    assert rows == ["KD none (student_layers=1)", "KD none (student_layers=2)", "KD knn (student_layers=2)"]
    assert "max_length" not in md


def test_report_augpro_table_applies_the_verdict_rule(tmp_path):
    """Best AugPro vs best other augmentation per column, compared seed by seed, with the rule's outcomes."""
    scores = {  # (task, size) -> method -> one score per seed (×100)
        # AugPro ahead: +10 on every seed (interval [+10, +10])
        ("sst2", 1000): {"none": [60, 60, 60], "eda": [70, 71, 72], "augpro-mix": [80, 81, 82]},
        # behind: -10 on every seed
        ("sst2", 2000): {"knn": [80, 81, 82], "augpro-mix": [60, 61, 62], "augpro-fgsm": [70, 71, 72]},
        # undecided: per-seed differences -2, +2, +6 (mean +2, sd 4)
        ("rte", 1000): {"eda": [72, 73, 74], "augpro-mix": [70, 75, 80]},
        # a large mean gap whose seeds disagree in sign stays undecided; a paired gap with a small spread does
        # not need a gap larger than the std of each cell: seeds 50/70/90 vs 49/69/89 differ by +1 every time
        ("rte", 2000): {"eda": [49, 69, 89], "augpro-mix": [50, 70, 90]},
    }
    lines = []
    for (task, size), methods in scores.items():
        for method, values in methods.items():
            for seed, v in enumerate(values):
                settings = {"task": task, "train_size": size, "mode": "kd", "augment": method, "seed": seed}
                lines.append(json.dumps({"run_id": f"{task}{size}{method}{seed}", "score": v / 100, "task": task,
                                         "train_size": size, "mode": "kd", "augment": method, "degree": None,
                                         "copies": 1, "seed": seed, "settings": settings}))
    # an FT run never enters the KD comparison
    lines.append(json.dumps({"run_id": "ft", "score": 0.99, "task": "rte", "train_size": 1000, "mode": "ft",
                             "augment": "augpro-mix", "seed": 0,
                             "settings": {"task": "rte", "train_size": 1000, "mode": "ft", "augment": "augpro-mix"}}))
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    write_report(str(tmp_path / "r.jsonl"), str(tmp_path / "rep"))
    md = (tmp_path / "rep" / "README.md").read_text()
    table = md.split("## AugPro against the other augmentation methods (KD)")[1].split("\n## ")[0]
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ")[1:] for line in table.splitlines()
            if line.startswith("| SST-2") or line.startswith("| RTE")}
    assert rows["SST-2 n=1,000"] == ["60.0 ± 0.0 (n=3)", "augpro-mix: 81.0 ± 1.0 (n=3)", "+21.0 [+18.5, +23.5]",
                                     "eda: 71.0 ± 1.0 (n=3)", "+10.0 [+10.0, +10.0]", "ahead |"]
    assert rows["SST-2 n=2,000"][1:] == ["augpro-fgsm: 71.0 ± 1.0 (n=3)", "", "knn: 81.0 ± 1.0 (n=3)",
                                         "-10.0 [-10.0, -10.0]", "behind |"]
    # mean +2, sd 4: t(2) * 4 / sqrt(3) = 9.9 -> [-7.9, +11.9]; t(17) * 4 / sqrt(18) = 1.99 < 2: 18 seeds settle it
    assert rows["RTE n=1,000"][4:] == ["+2.0 [-7.9, +11.9]", "undecided (~18 seeds at this spread) |"]
    assert rows["RTE n=2,000"][4:] == ["+1.0 [+1.0, +1.0]", "ahead |"]
    assert "Columns: ahead: 2; behind: 1; undecided: 1. Verdict over all columns shown: inconclusive" in table
    # a study without AugPro runs (the degree study) has no such section
    keep = [x for x in lines if "augpro" not in x]
    (tmp_path / "d.jsonl").write_text("\n".join(keep) + "\n")
    write_report(str(tmp_path / "d.jsonl"), str(tmp_path / "rep2"))
    assert "AugPro against" not in (tmp_path / "rep2" / "README.md").read_text()


def test_report_degree_sweep_with_default_degree_runs_of_the_same_method(tmp_path):
    """A methods study (knn at its default degree: degree None) merged with a degree sweep of knn:
    the None-degree runs stay out of the sweep's tables and figures (no "degree None" column to
    format) and are still listed in the method comparison."""
    lines = []

    def add(method, degree, seed, score):
        settings = {"task": "sst2", "train_size": 1000, "mode": "kd", "augment": method, "seed": seed}
        lines.append(json.dumps({"run_id": f"{method}-{degree}-{seed}", "score": score, "task": "sst2",
                                 "train_size": 1000, "mode": "kd", "augment": method, "degree": degree,
                                 "copies": 1, "seed": seed, "settings": settings}))

    for seed in (0, 1):
        add("none", None, seed, 0.70 + 0.01 * seed)
        add("knn", 0.1, seed, 0.74 + 0.01 * seed)
        add("knn", 0.3, seed, 0.72 + 0.01 * seed)
        add("knn", None, seed, 0.80 + 0.01 * seed)  # the methods study's run
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    write_report(str(tmp_path / "r.jsonl"), str(tmp_path / "rep"))
    md = (tmp_path / "rep" / "README.md").read_text()
    assert "None" not in md
    sweep = md.split("### SST-2: knn, dev score vs degree")[1].split("\n## ")[0]
    assert "| n | mode | copies | no DA | degree 0.1 | degree 0.3 | best degree |" in sweep
    assert "| 1,000 | KD | 1 | 70.5 ± 0.7 (n=2) | **74.5 ± 0.7 (n=2)** | 72.5 ± 0.7 (n=2) | 0.1 |" in sweep
    assert "2 knn run(s) at the method's default degree (none given) are not part of this sweep" in sweep
    methods = md.split("## Method comparison")[1].split("\n## ")[0]
    assert "| KD knn | **80.5 ± 0.7 (n=2)** |" in methods
    assert (tmp_path / "rep" / "degree_sst2.png").is_file()
    # a file holding only the sweep reads as before: no note
    (tmp_path / "s.jsonl").write_text("\n".join(x for x in lines if '"degree": null' not in x or '"none"' in x) + "\n")
    write_report(str(tmp_path / "s.jsonl"), str(tmp_path / "rep2"))
    assert "default degree" not in (tmp_path / "rep2" / "README.md").read_text()


# --------------------------------------------------------------------------- several workers


WORKER_SCRIPT = KILL_SCRIPT.replace(
    "    (out / \"model.safetensors\").write_bytes(b\"\\0\" * 4096)\n",
    "    (out / \"model.safetensors\").write_bytes(b\"\\0\" * 4096)\n"
    "    with open(sys.argv[2], \"a\") as log:  # who trained what: one short line per call\n"
    "        log.write(f\"{os.getpid()} {cfg.mode} {out.name}\\n\")\n",
).replace("import json, random, sys, time, types", "import json, os, random, sys, time, types").replace(
    "random.uniform(0.0, 0.03)", "0.05")  # long enough that both workers are up before the grid is done


def test_two_workers_split_a_study_and_train_everything_once(tmp_path):
    doc = {"output_dir": str(tmp_path / "out"), "teacher": {"epochs": 1},
           "grids": [{"task": ["sst2", "rte"], "train_size": [50, 100], "mode": ["kd", "ft"],
                      "augment": ["none", "knn"], "degree": [0.1, 0.3], "seed": [0, 1]}]}
    cfg = write_yaml(tmp_path / "w.yaml", doc)
    study = load_study(cfg)
    script = tmp_path / "worker.py"
    script.write_text(WORKER_SCRIPT)
    assert "os.getpid()" in script.read_text()
    calls = tmp_path / "calls.log"
    procs = [subprocess.Popen([sys.executable, str(script), str(cfg), str(calls)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    rows = read_results(study.results_path)
    assert len(result_lines(study.results_path)) == len(rows) == len(study.runs)
    assert {r["run_id"] for r in rows} == {r.run_id for r in study.runs}
    log = [line.split() for line in calls.read_text().splitlines()]
    students = [name for _, mode, name in log if mode != "teacher"]
    teachers = [name for _, mode, name in log if mode == "teacher"]
    assert sorted(students) == sorted(r.run_id for r in study.runs)  # no run trained twice
    assert sorted(teachers) == sorted(t.folder.name for t in study.teachers.values())  # nor a teacher
    assert len({pid for pid, _, _ in log}) == 2  # both workers did work
    assert not list((tmp_path / "out" / study_mod.CLAIMS_DIR).iterdir())  # finished claims are cleaned up


def test_worker_trains_other_teachers_while_one_is_claimed(small, monkeypatch):
    """A teacher another worker is training is not waited for: later runs (and their teacher) go first."""
    study = load_study(small)
    first_teacher = study.runs[0].teacher
    assert first_teacher is not None and study.runs[0].settings["seed"] == 0
    study.output_dir.mkdir(parents=True)
    held = study_mod._claim(study.output_dir, f"teacher-{first_teacher.teacher_id}")
    assert held is not None
    calls: list[dict] = []
    inner = FakeRunner()

    def runner(cfg):
        calls.append(cfg.to_dict())
        if len(calls) == 8:
            held.close()  # the other worker's teacher is done (its claim goes)
        return inner(cfg)

    monkeypatch.setattr(study_mod, "run_training", runner)
    monkeypatch.setattr(study_mod, "WAIT_POLL_S", 0.01)
    assert run_study(str(small)) == 0
    seeds_before_release = [(c["mode"], c["seed"]) for c in calls[:8]]
    # nothing that needs the held seed-0 teacher ran while it was held
    assert ("kd", 0) not in seeds_before_release and ("teacher", 0) not in seeds_before_release
    assert ("teacher", 1) in seeds_before_release and ("ft", 0) in seeds_before_release
    assert len(read_results(study.results_path)) == len(study.runs)
    assert [c["seed"] for c in calls if c["mode"] == "teacher"] == [1, 0]


def test_worker_waits_for_a_teacher_when_nothing_else_is_left(tmp_path, monkeypatch):
    doc = {"output_dir": str(tmp_path / "out"), "grids": [{"task": "sst2", "mode": "kd", "augment": "none",
                                                           "seed": 0}]}
    cfg = write_yaml(tmp_path / "one.yaml", doc)
    study = load_study(cfg)
    study.output_dir.mkdir(parents=True)
    held = study_mod._claim(study.output_dir, f"teacher-{study.runs[0].teacher.teacher_id}")
    sleeps: list[float] = []

    def fake_sleep(s):
        sleeps.append(s)
        if len(sleeps) == 3:
            held.close()

    monkeypatch.setattr(study_mod.time, "sleep", fake_sleep)
    runner = FakeRunner()
    monkeypatch.setattr(study_mod, "run_training", runner)
    assert run_study(str(cfg)) == 0
    assert len(sleeps) == 3 and len(runner.students()) == 1
    assert len(read_results(study.results_path)) == 1


def test_worker_leaves_runs_other_workers_hold(small, fake, capsys):
    study = load_study(small)
    study.output_dir.mkdir(parents=True)
    held = [study_mod._claim(study.output_dir, r.run_id) for r in study.runs[-3:]]
    assert run_study(str(small)) == 0
    out = capsys.readouterr().out
    assert "other workers are running the last 3 of 20 runs" in out
    assert len(read_results(study.results_path)) == 17 and len(fake.students()) == 17
    for h in held:
        h.close()
    assert run_study(str(small)) == 0 and len(read_results(study.results_path)) == 20


def test_prune_refuses_while_a_worker_runs(small, fake):
    run_study(str(small))
    study = load_study(small)
    worker = study_mod._worker_lock(study.output_dir, study.results_path)
    try:
        with pytest.raises(UserError, match="running"):
            run_study(str(small), prune=True)
    finally:
        worker.close()
    assert run_study(str(small), prune=True) == 0


def test_append_after_a_torn_fragment_keeps_the_new_line(tmp_path):
    path = tmp_path / "r.jsonl"
    append_line(path, {"run_id": "a"})
    with open(path, "ab") as fh:
        fh.write(b'{"run_id": "b", "sco')  # a worker killed mid-write while another goes on
    append_line(path, {"run_id": "c"})
    assert [r["run_id"] for r in read_results(path)] == ["a", "c"]


# --------------------------------------------------------------------------- shared teachers, versions


def _shared_file(tmp_path: Path) -> Path:
    return write_yaml(tmp_path / "teachers.yaml", {
        "dir": str(tmp_path / "shared"), "base": {"epochs": 2, "learning-rate": 5.0e-5},
        "tasks": {"sst2": {"max-length": 64}, "rte": {"max-length": 128, "epochs": 5}}})


def test_shared_teacher_is_trained_once_for_every_study(fake, tmp_path):
    _shared_file(tmp_path)
    grid = {"task": ["sst2", "rte"], "mode": ["kd", "ft"], "augment": "none", "train-size": [100, 200],
            "seed": [0, 1], "teacher": "shared"}
    a = write_yaml(tmp_path / "a.yaml", {"output_dir": str(tmp_path / "a"), "shared_teachers": "teachers.yaml",
                                         "grids": [grid]})
    b = write_yaml(tmp_path / "b.yaml", {"output_dir": str(tmp_path / "b"), "shared_teachers": "teachers.yaml",
                                         "base": {"max-length": 32}, "grids": [{**grid, "augment": "knn"}]})
    assert run_study(str(a)) == 0
    teachers = fake.teachers()
    # one per task, on the full training split, with the file's settings (not the student runs' size/seed)
    assert sorted(t["task"] for t in teachers) == ["rte", "sst2"]
    sst2 = next(t for t in teachers if t["task"] == "sst2")
    assert sst2["train_size"] is None and sst2["seed"] == 0 and sst2["epochs"] == 2 and sst2["max_length"] == 64
    assert sst2["save_checkpoints"] and sst2["resume"]
    assert next(t for t in teachers if t["task"] == "rte")["epochs"] == 5
    kd = [c for c in fake.students() if c["mode"] == "kd"]
    assert {Path(c["teacher"]).parent for c in kd} == {tmp_path / "shared"}
    assert run_study(str(b)) == 0  # another study, other student settings: the same teachers, not retrained
    assert len(fake.teachers()) == 2
    assert study_mod.load_study(str(b)).teachers.keys() == study_mod.load_study(str(a)).teachers.keys()


def test_shared_teacher_resumes_instead_of_restarting(fake, tmp_path):
    _shared_file(tmp_path)
    cfg = write_yaml(tmp_path / "a.yaml", {"output_dir": str(tmp_path / "a"), "shared_teachers": "teachers.yaml",
                                           "grids": [{"task": "sst2", "mode": "kd", "teacher": "shared"}]})
    teacher = next(iter(load_study(str(cfg)).teachers.values()))
    ckpt = teacher.folder / "checkpoint-10"
    ckpt.mkdir(parents=True)  # a killed teacher's epoch checkpoint: kept for its resume
    (ckpt / "augpro_checkpoint_complete").write_text("")
    run_study(str(cfg))
    assert ckpt.is_dir() and len(fake.teachers()) == 1


def test_shared_teacher_errors(tmp_path):
    _shared_file(tmp_path)
    no_file = write_yaml(tmp_path / "n.yaml", {"output_dir": "o", "grids": [{"mode": "kd", "teacher": "shared"}]})
    with pytest.raises(UserError, match="needs a shared_teachers file"):
        load_study(str(no_file))
    other = write_yaml(tmp_path / "c.yaml", {"output_dir": "o", "shared_teachers": "teachers.yaml",
                                             "grids": [{"task": "cola", "mode": "kd", "teacher": "shared"}]})
    with pytest.raises(UserError, match="no teacher for task 'cola'"):
        load_study(str(other))
    missing = write_yaml(tmp_path / "m.yaml", {"output_dir": "o", "shared_teachers": "nope.yaml", "grids": [{}]})
    with pytest.raises(UserError, match="not found"):
        load_study(str(missing))
    write_yaml(tmp_path / "bad.yaml", {"dir": "x", "tasks": {"sst2": {"augment": "knn"}}})
    bad = write_yaml(tmp_path / "b.yaml", {"output_dir": "o", "shared_teachers": "bad.yaml", "grids": [{}]})
    with pytest.raises(UserError, match="'augment' cannot be set"):
        load_study(str(bad))


def test_defaults_version_keeps_old_ids_and_separates_new_ones(tmp_path):
    grid = [{"task": "sst2", "mode": "kd", "augment": "fgsm", "seed": 0}]
    old = write_yaml(tmp_path / "old.yaml", {"output_dir": "o", "base": {"defaults-version": 1}, "grids": grid})
    new = write_yaml(tmp_path / "new.yaml", {"output_dir": "o", "grids": grid})
    old_run, new_run = load_study(str(old)).runs[0], load_study(str(new)).runs[0]
    # version 1 is left out of the id, as every run before the setting existed was version 1
    assert "defaults_version" not in study_mod._hashed_view(old_run.settings)
    assert study_mod._hashed_view(new_run.settings)["defaults_version"] == DEFAULTS_VERSION
    assert old_run.run_id != new_run.run_id
    from augpro.config import TrainConfig

    assert TrainConfig(augment="fgsm", defaults_version=1).resolved_fgsm_eps == 1.0
    assert TrainConfig(augment="fgsm").resolved_fgsm_eps == 0.1
    assert TrainConfig(augment="fgsm", fgsm_eps=0.5).resolved_fgsm_eps == 0.5
    assert TrainConfig(augment="augpro-fgsm").resolved_fgsm_eps is None  # the augmenter's own default


def test_study_records_val_and_history(fake, tmp_path, monkeypatch):
    def with_val(cfg):
        result = fake(cfg)
        result["val"] = {"score": 0.7}
        result["history"] = [{"step": 1, "epoch": 1.0, "dev": 0.6, "val": 0.65}]
        return result

    monkeypatch.setattr(study_mod, "run_training", with_val)
    cfg = write_yaml(tmp_path / "c.yaml", {"output_dir": str(tmp_path / "o"), "base": {"eval-every-epoch": True},
                                           "grids": [{"mode": "ft"}]})
    run_study(str(cfg))
    (row,) = read_results(tmp_path / "o" / "results.jsonl")
    assert row["val"] == {"score": 0.7} and row["history"][0]["val"] == 0.65
    assert fake.calls[0]["eval_every_epoch"] is True  # a pilot may ask for per-epoch evaluation
    plain = write_yaml(tmp_path / "p.yaml", {"output_dir": str(tmp_path / "p"), "grids": [{"mode": "ft"}]})
    run_study(str(plain))
    assert fake.calls[-1]["eval_every_epoch"] is False  # the study's default otherwise


def test_grid_priority_orders_runs_before_seeds(tmp_path):
    cfg = write_yaml(tmp_path / "p.yaml", {"output_dir": "o", "grids": [
        {"task": "sst2", "train-size": 1000, "mode": "ft", "seed": [0, 1]},
        {"task": "sst2", "train-size": 2000, "mode": "ft", "seed": [0, 1], "priority": -1}]})
    order = [(r.settings["train_size"], r.settings["seed"]) for r in load_study(str(cfg)).runs]
    assert order == [(2000, 0), (2000, 1), (1000, 0), (1000, 1)]
    bad = write_yaml(tmp_path / "b.yaml", {"output_dir": "o", "grids": [{"mode": "ft", "priority": "high"}]})
    with pytest.raises(UserError, match="priority must be an integer"):
        load_study(str(bad))
    # without priorities: seed first, as before
    plain = write_yaml(tmp_path / "q.yaml", {"output_dir": "o", "grids": [
        {"task": "sst2", "train-size": [1000, 2000], "mode": "ft", "seed": [0, 1]}]})
    assert [(r.settings["train_size"], r.settings["seed"]) for r in load_study(str(plain)).runs] == \
        [(1000, 0), (2000, 0), (1000, 1), (2000, 1)]


def test_report_learning_curves(tmp_path):
    """Runs with a per-epoch history get a curves figure and a table of where validation flattens."""
    rows = []
    for mode, vals in (("ft", [60, 70, 75, 78.5, 79, 78.8]), ("kd", [62, 72, 74, 80, 79.5, 81])):
        hist = [{"step": 10 * (i + 1), "epoch": float(i + 1), "val": v / 100, "dev": (v - 1) / 100}
                for i, v in enumerate(vals)]
        rows.append({"run_id": mode, "score": 0.77, "val": {"score": vals[-1] / 100}, "history": hist,
                     "task": "sst2", "train_size": 1000, "mode": mode, "augment": "none", "degree": None,
                     "copies": 1, "seed": 0, "settings": {"task": "sst2", "train_size": 1000, "mode": mode}})
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report(str(tmp_path / "r.jsonl"), str(tmp_path / "rep"))
    assert (tmp_path / "rep" / "curves_sst2.png").is_file()
    md = (tmp_path / "rep" / "README.md").read_text()
    table = md.split("## Learning curves")[1].split("\n## ")[0]
    ft = next(x for x in table.splitlines() if "| FT none |" in x)
    kd = next(x for x in table.splitlines() if "| KD none |" in x)
    # the rule runs on the 3-point running mean. FT: smoothed [65, 68.3, 74.5, 77.5, 78.8, 78.9], top 78.9,
    # within 1 point from step 50 on. KD: smoothed [67, 69.3, 75.3, 77.8, 80.2, 80.3]: the dip to 79.5 at
    # step 50 (which on the raw curve, best 81.0, put KD's flat point at its last evaluation) is averaged
    # away, so KD is flat from step 50 too
    assert "| 79.0 | 50 (epoch 5) | 60 | 78.8 | 77.0 |" in ft
    assert "| 81.0 | 50 (epoch 5) | 60 | 81.0 | 77.0 |" in kd
    assert "3-point running mean" in md.split("## Learning curves")[1]


def test_flat_from_ignores_a_single_noisy_evaluation():
    """One evaluation 2 points off the plateau (about two validation standard errors), down or up,
    leaves the "flat from" point where the clean curve has it. On the raw curve the old rule moved
    it: the dip at step 70 to step 80, and the spike off the table (no evaluation after it stays
    within a point of it; the old code raised StopIteration there)."""
    from augpro.report_rows import Row
    from augpro.report_tables import curves_table, running_mean

    assert running_mean([1.0, 2.0, 6.0, 1.0]) == [1.5, 3.0, 3.0, 3.5]
    clean = [60, 70, 80, 80, 80, 80, 80, 80, 80, 80]
    curves = {0: clean, 1: clean[:6] + [78] + clean[7:], 2: clean[:6] + [82] + clean[7:],
              3: [60, 70, 80, 80, 80, 80, 80, 80, 78, 76]}  # 3: falls off at the end, never flat

    def row(seed, vals):
        hist = [{"step": 10 * (i + 1), "epoch": float(i + 1), "val": v / 100} for i, v in enumerate(vals)]
        return Row({"run_id": str(seed), "score": 0.8, "history": hist, "task": "sst2", "train_size": 1000,
                    "mode": "kd", "augment": "none", "degree": None, "copies": 1, "seed": seed,
                    "settings": {"task": "sst2", "train_size": 1000, "mode": "kd"}}, [])

    table = curves_table([row(seed, vals) for seed, vals in curves.items()])
    flat = {int(line.split(" | ")[3]): line.split(" | ")[5] for line in table[2:]}
    # smoothed clean curve: [65, 70, 76.7, 80, ...]: within 1 point of its top (80) from step 40 on (one
    # evaluation after the raw curve, the price of smoothing a sharp rise)
    assert flat[0] == flat[1] == flat[2] == "40 (epoch 4)"
    assert flat[3] == "–"


def _result_lines(cells: dict[tuple, list[float]]) -> list[str]:
    """Finished-run lines for hand-made cells: (setting, value) pairs -> one score (×100) per seed 0, 1, ..."""
    lines = []
    for key, values in cells.items():
        s = dict(key)
        for seed, v in enumerate(values):
            settings = {**s, "seed": seed}
            lines.append(json.dumps({"run_id": f"{sorted(settings.items())}", "score": v / 100, "task": s["task"],
                                     "train_size": s["train_size"], "mode": s["mode"], "augment": s["augment"],
                                     "degree": None, "copies": 1, "seed": seed, "settings": settings}))
    return lines


def test_report_conditions_table_pairs_one_method_across_conditions(tmp_path):
    """A setting that varies besides the cell's own (hidden_weight) splits a method into variants; the
    Conditions section sets them against each other seed by seed, naming only the settings that differ."""
    cells = {("none", 0.0, True): [70, 71, 72], ("none", 1.0, False): [71, 72, 73],
             ("augpro-fgsm", 0.0, True): [80, 81, 82], ("augpro-fgsm", 1.0, False): [80, 79, 84]}
    lines = _result_lines({(("task", "sst2"), ("train_size", 2000), ("mode", "kd"), ("augment", method),
                            ("hidden_weight", hidden), ("shared_forward", shared), ("max_length", 64)): values
                           for (method, hidden, shared), values in cells.items()})
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    write_report(str(tmp_path / "r.jsonl"), str(tmp_path / "rep"))
    md = (tmp_path / "rep" / "README.md").read_text()
    table = md.split("## Conditions")[1].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| KD")]
    assert rows == [
        "| KD none | hidden_weight=1.0, shared_forward=False − hidden_weight=0.0, shared_forward=True "
        "| **+1.0 [+1.0, +1.0]** |",
        # differences 0, -2, +2: mean 0, undecided
        "| KD augpro-fgsm | hidden_weight=1.0, shared_forward=False − hidden_weight=0.0, shared_forward=True "
        "| +0.0 [-5.0, +5.0] |",
    ]
    # one seed per cell (a pilot): nothing to pair, no section
    (tmp_path / "one.jsonl").write_text("\n".join(x for x in lines if '"seed": 0,' in x) + "\n")
    write_report(str(tmp_path / "one.jsonl"), str(tmp_path / "rep1"))
    assert "## Conditions" not in (tmp_path / "rep1" / "README.md").read_text()


def test_report_sets_kd_conditions_against_the_columns_only_ft(tmp_path):
    """Settings only KD has (MRPC's depth x hidden-state KD) are conditions of KD alone: FT keeps one
    unlabelled row, every KD variant is set against it seed by seed, and the figures' labels name
    only what varies within a mode."""
    from augpro.report_rows import short_labels

    cells = {("kd", "2", 0.0): [70, 71, 72], ("kd", "4", 1.0): [82, 83, 84], ("ft", "2", 0.0): [69, 69, 70]}
    lines = _result_lines({(("task", "mrpc"), ("train_size", None), ("mode", mode), ("augment", "none"),
                            ("student_layers", layers), ("hidden_weight", hidden), ("shared_forward", mode == "ft")):
                           values for (mode, layers, hidden), values in cells.items()})
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    write_report(str(tmp_path / "r.jsonl"), str(tmp_path / "rep"))
    md = (tmp_path / "rep" / "README.md").read_text()
    against_ft = md.split("### Each method against FT without augmentation")[1].split("\n### ")[0]
    rows = [line for line in against_ft.splitlines() if line.startswith("| KD")]
    assert rows == ["| KD none (hidden_weight=0.0, student_layers=2) | **+1.7 [+0.2, +3.1]** |",
                    "| KD none (hidden_weight=1.0, student_layers=4) | **+13.7 [+12.2, +15.1]** |"]
    assert "FT none (hidden_weight=0.0, student_layers=2)" in md
    assert "shared_forward" not in md  # it varies only between the modes: not a condition
    assert (tmp_path / "rep" / "paired_mrpc.png").is_file()
    kd2, kd4, ft = (("kd", "none", None, 1, (("hidden_weight", h), ("mode_only", m))) for h, m in
                    ((0.0, "a"), (1.0, "a"), (0.0, "b")))
    ft = ("ft",) + ft[1:]
    labels = short_labels([kd2, kd4, ft])
    assert labels[kd2] == "KD none (hidden_weight=0.0)" and labels[ft] == "FT none"


def test_report_leaves_out_runs_of_a_retrained_teachers_other_weights(tmp_path):
    """KD runs of one column taught by the same teacher id but other weights (retrained on another
    machine) are not paired: the report keeps the version that taught most runs, names the runs of
    the other one and leaves them out of its tables and comparisons; one version (the usual case)
    gives no note and leaves nothing out."""
    lines = []
    for seed, (weights, tdev) in enumerate([("w-old", 0.8968), ("w-new", 0.8979), ("w-new", 0.8979)]):
        for mode in ("kd", "ft"):
            settings = {"task": "sst2", "train_size": 8000, "mode": mode, "augment": "none", "seed": seed}
            score = 0.8 + seed / 100 - (0.05 if (mode, weights) == ("kd", "w-old") else 0)
            lines.append(json.dumps({"run_id": f"{mode}{seed}", "score": score, "task": "sst2",
                                     "train_size": 8000, "mode": mode, "augment": "none", "degree": None,
                                     "copies": 1, "seed": seed, "settings": settings,
                                     "teacher_id": "e587b33e" if mode == "kd" else None,
                                     "teacher_dev": {"score": tdev} if mode == "kd" else None,
                                     "teacher_weights": weights if mode == "kd" else None}))
    (tmp_path / "r.jsonl").write_text("\n".join(lines) + "\n")
    write_report(str(tmp_path / "r.jsonl"), str(tmp_path / "rep"))
    md = (tmp_path / "rep" / "README.md").read_text()
    assert "| teacher | 89.8 (n=1) |" in md  # the kept version only
    assert "5 finished runs (1 more left out: Retrained teachers)" in md
    assert ("- SST-2 n=8,000: KD runs taught by 2 versions of teacher e587b33e (dev 89.68, 89.79): the same "
            "settings, retrained on another machine. Kept: the 2 runs of the version with dev 89.79.") in md
    assert "  - KD none, seed 0: 75.0 (run kd0, teacher dev 89.68)" in md
    assert "| KD none | **81.5 ± 0.7 (n=2)** |" in md  # seeds 1 and 2 only
    assert "| KD none | +0.0 [+0.0, +0.0] |" in md  # against FT: seeds 1 and 2 (seed 0 would pull it to -1.7)
    (tmp_path / "one.jsonl").write_text("\n".join(lines[2:]) + "\n")
    write_report(str(tmp_path / "one.jsonl"), str(tmp_path / "rep1"))
    md1 = (tmp_path / "rep1" / "README.md").read_text()
    assert "Retrained teachers" not in md1 and "| teacher | 89.8 (n=1) |" in md1 and "left out" not in md1
    # lines written before teacher_weights existed, beside later lines of the same teacher: one version
    older = [json.dumps({**json.loads(x), "teacher_weights": None}) for x in lines[2:4]]  # seed 1
    (tmp_path / "mixed.jsonl").write_text("\n".join(older + lines[4:]) + "\n")  # + seed 2, same teacher, "w-new"
    write_report(str(tmp_path / "mixed.jsonl"), str(tmp_path / "rep2"))
    md2 = (tmp_path / "rep2" / "README.md").read_text()
    assert "Retrained teachers" not in md2 and "| teacher | 89.8 (n=1) |" in md2 and "left out" not in md2
