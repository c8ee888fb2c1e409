"""Figure 7 — the cost of one complete, realistic student run: today's path against the new one.

One run is what a study worker does for one grid cell (``augpro.runner.run_training``, in this
process): load the teacher and a 2-layer student, read and subset SST-2 (2,000 rows, seed 0),
tokenize, label (training-set logits: cached, as after the first run of a teacher; a knn pool's
labels: computed in the run), build the augmenter, train 80 steps of batch 32 at learning rate
5e-4 (the methods study's budget, max length 64), evaluate on the whole dev set, save the model.
One thread, as the study workers run (``OMP_NUM_THREADS=1``).

* **today's path**: fp32 (the teacher too: ``--no-bf16-teacher``), separate student forwards;
* **new path**: ``--shared-forward --bf16 --bf16-teacher``.

Each timed run gets a fresh copy of a warm cache folder holding what a study computes once and
every later run reuses (training-set teacher logits of both precisions, the projector's and knn's
neighbour tables); an untimed 2-step run of each path fills it and warms the process. A run's
cost is its CPU time (core-seconds: robust to other work on a shared machine; its wall time is
printed beside it). ``run_cost_vs_fp32``: new / today's core-seconds of the KD + AugPro-Mix run
(median over repetitions, runs interleaved, order reversed every other repetition);
``runs_per_core_hour[...]``: 3,600 / core-seconds. Both runs' dev accuracies are printed: the
same seed on both paths, but not the same run (bf16 rounding, other dropout draws).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from benchmarks import _common as C

SIZES = {
    "tiny": dict(train_size=64, max_steps=2, max_length=32, dev_size=64, methods=("augpro-mix",), reps=1),
    "quick": dict(train_size=2000, max_steps=80, max_length=64, dev_size=None, methods=("augpro-mix",), reps=1),
    "full": dict(train_size=2000, max_steps=80, max_length=64, dev_size=None, methods=("augpro-mix", "knn"), reps=2),
}
# "today": the fp32 path as measured (the teacher in fp32 too, not defaults version 3's native-bf16 default)
PATHS = {"today": {"bf16_teacher": False}, "new": {"shared_forward": True, "bf16": True, "bf16_teacher": True}}


@contextlib.contextmanager
def _cache_folder(path: Path):
    old = os.environ.get("AUGPRO_CACHE")
    os.environ["AUGPRO_CACHE"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("AUGPRO_CACHE", None)
        else:
            os.environ["AUGPRO_CACHE"] = old


def _config(cfg: dict, teacher: str, method: str, path: str, out: Path, steps: int | None = None):
    from augpro.config import TrainConfig

    return TrainConfig(mode="kd", task="sst2", data_dir=C.data_dir(), train_size=cfg["train_size"],
                       dev_size=cfg["dev_size"], max_length=cfg["max_length"], teacher=teacher, student_layers="2",
                       learning_rate=5e-4, batch_size=32, eval_batch_size=256, max_steps=steps or cfg["max_steps"],
                       seed=0, augment=method, output_dir=str(out), progress=False, save_checkpoints=False,
                       eval_every_epoch=False, threads=1, **PATHS[path])


def _one_run(cfg: dict, teacher: str, method: str, path: str, warm: Path, scratch: Path) -> dict:
    from augpro.runner import run_training

    cache = Path(tempfile.mkdtemp(dir=scratch, prefix="cache-"))
    shutil.copytree(warm, cache, dirs_exist_ok=True)
    out = Path(tempfile.mkdtemp(dir=scratch, prefix=f"{method}-{path}-"))
    with _cache_folder(cache):
        w0, c0 = time.perf_counter(), time.process_time()
        result = run_training(_config(cfg, teacher, method, path, out))
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    return {"wall": wall, "cpu": cpu, "dev": result["dev"]["score"], "train_s": result["train_runtime_s"]}


def run(report: C.Report, mode: str = "quick") -> None:
    from augpro.runner import run_training

    cfg = SIZES[mode]
    report.section(f"7. whole run (KD on SST-2 {cfg['train_size']} rows, {cfg['max_steps']} steps of batch 32, "
                   f"{', '.join(cfg['methods'])}; today's path vs --shared-forward --bf16 --bf16-teacher; "
                   f"{cfg['reps']} rep(s), one thread)")
    teacher = C.fine_tuned_teacher(mode)
    threads = torch.get_num_threads()
    scratch = Path(tempfile.mkdtemp(prefix="augpro-bench-run-"))
    try:
        warm = scratch / "warm-cache"
        warm.mkdir()
        with _cache_folder(warm):  # untimed: fills the study-wide caches and warms the process up
            for method in cfg["methods"]:
                for path in PATHS:
                    run_training(_config(cfg, teacher, method, path, scratch / f"warmup-{method}-{path}", steps=2))
        res: dict[tuple[str, str], list[dict]] = {}
        for r in range(cfg["reps"]):
            for method in cfg["methods"]:
                for path in (list(PATHS) if r % 2 == 0 else list(PATHS)[::-1]):
                    res.setdefault((method, path), []).append(_one_run(cfg, teacher, method, path, warm, scratch))
    finally:
        torch.set_num_threads(threads)
        shutil.rmtree(scratch, ignore_errors=True)

    for method in cfg["methods"]:
        cpu = {p: C.median([x["cpu"] for x in res[(method, p)]]) for p in PATHS}
        wall = {p: C.median([x["wall"] for x in res[(method, p)]]) for p in PATHS}
        for p in PATHS:
            runs = res[(method, p)]
            devs = ", ".join(f"{x['dev']:.4f}" for x in runs)
            train_s = C.median([x["train_s"] for x in runs])
            report.value(f"run_core_s[{method},{p}]", cpu[p],
                         f"core-s (wall {C.fmt_s(wall[p])}; training {C.fmt_s(train_s)}; dev accuracy {devs})")
            report.value(f"runs_per_core_hour[{method},{p}]", 3600 / cpu[p])
        key = "run_cost_vs_fp32" if method == "augpro-mix" else f"run_cost_vs_fp32_{method.replace('-', '_')}"
        report.ratio(key, cpu["new"] / cpu["today"],
                     f"KD + {method}: {cpu['new']:.1f} vs {cpu['today']:.1f} core-s per run "
                     f"({3600 / cpu['new']:.1f} vs {3600 / cpu['today']:.1f} runs per core-hour); wall "
                     f"{wall['new'] / wall['today']:.3f}")
    report.target("run_cost_vs_fp32", "<=", 0.65)
