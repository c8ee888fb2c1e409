"""Check that every augmentation method trains on the GPU (or whatever device torch picks).

Runs, in one process, short real trainings on small GLUE subsets and prints one line per run
(dev score, realised degree, label-flip rate, steps per second), then a summary with the runs
that failed. It exits 1 if any run failed. CI has no GPU, so this is run by hand on a GPU machine:

    python scripts/gpu_check.py --data-dir ../shared/data/glue --out gpu-check.json

On a CPU-only machine the same script runs on the CPU (slowly; ``--steps 4`` makes it a smoke test).
What it covers: teachers and KD/FT students for single sentences (SST-2), pairs (RTE) and
regression (STS-B); every model-based method (none, knn, mask, random, mixkd, fgsm, augpro-mix,
augpro-fgsm), pools labelled live, the student's projection table, and ``--bf16``/``--fp16`` where
the device supports them. Synonym and EDA are left out: they build their pools on the CPU from
WordNet text, the same pool path that knn takes on the device.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path

import torch

from augpro.config import TrainConfig
from augpro.runner import run_training


def _run(name: str, cfg: TrainConfig, results: list[dict]) -> dict | None:
    t0 = time.perf_counter()
    try:
        out = run_training(cfg)
    except Exception as exc:  # noqa: BLE001 - every failure is reported, the check goes on
        wall = time.perf_counter() - t0
        tb = traceback.format_exc().strip().splitlines()
        results.append({"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}", "wall_s": wall,
                        "traceback": tb[-12:]})
        print(f"FAIL {name}: {type(exc).__name__}: {exc}", flush=True)
        print("     " + "\n     ".join(tb[-6:]), flush=True)
        return None
    wall = time.perf_counter() - t0
    aug = out.get("augmentation") or {}
    row = {"name": name, "ok": True, "score": out["dev"]["score"], "realised_degree": aug.get("realised_degree"),
           "label_flip_rate": aug.get("label_flip_rate"), "steps": out.get("steps"),
           "train_runtime_s": out.get("train_runtime_s"), "wall_s": wall}
    results.append(row)
    rate = (row["steps"] or 0) / row["train_runtime_s"] if row.get("train_runtime_s") else float("nan")
    deg = f" degree {row['realised_degree']:.3f}" if row["realised_degree"] is not None else ""
    flips = f" flips {row['label_flip_rate']:.3f}" if row["label_flip_rate"] is not None else ""
    print(f"ok   {name}: score {row['score']:.4f}{deg}{flips}, {row['steps']} steps at {rate:.1f}/s, "
          f"{wall:.1f} s wall", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True, help="GLUE-layout folder")
    p.add_argument("--model", default=None, help="base checkpoint (default: the offline MiniLM-L6)")
    p.add_argument("--steps", type=int, default=60, help="student steps per run")
    p.add_argument("--teacher-steps", type=int, default=120)
    p.add_argument("--work-dir", default=None, help="where runs go (default: a temporary folder)")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    ns = p.parse_args(argv)

    cuda = torch.cuda.is_available()
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "python": sys.version.split()[0],
           "device": torch.cuda.get_device_name(0) if cuda else "cpu",
           "bf16": bool(cuda and torch.cuda.is_bf16_supported())}
    print(json.dumps(env), flush=True)
    work = Path(ns.work_dir or tempfile.mkdtemp(prefix="augpro-gpu-check-"))
    results: list[dict] = []
    common = dict(data_dir=ns.data_dir, save_checkpoints=False, eval_every_epoch=False, progress=False,
                  cache=False, eval_batch_size=256)
    student = dict(common, student=ns.model, student_layers="2", max_steps=ns.steps, batch_size=32,
                   learning_rate=5e-4)
    t_start = time.perf_counter()

    tasks = [("sst2", 2000, 64), ("rte", 500, 128), ("stsb", 500, 128)]
    for task, size, max_len in tasks:
        tdir = work / f"{task}-teacher"
        teacher = _run(f"{task} teacher", TrainConfig(mode="teacher", task=task, train_size=size, max_length=max_len,
                                                       model=ns.model, max_steps=ns.teacher_steps,
                                                       output_dir=str(tdir), **common), results)
        if teacher is None:
            continue
        base = TrainConfig(mode="kd", task=task, train_size=size, max_length=max_len, teacher=str(tdir), **student)
        if task == "sst2":
            variants = [("none", {}), ("knn", {"degree": 0.3}), ("mask", {"degree": 0.3}),
                        ("random", {"degree": 0.3}), ("mixkd", {}), ("fgsm", {}), ("augpro-mix", {}),
                        ("augpro-fgsm", {}), ("knn", {"degree": 0.3, "copies": 2, "pool_labels": "live"}),
                        ("augpro-mix", {"projection_table": "student"}),
                        ("augpro-fgsm", {"mode": "ft"})]
            if env["bf16"]:
                variants += [("augpro-mix", {"bf16": True}), ("augpro-fgsm", {"bf16": True})]
            if cuda:
                variants += [("augpro-mix", {"fp16": True})]
        else:
            variants = [("none", {}), ("knn", {"degree": 0.3}), ("mixkd", {}), ("augpro-mix", {}),
                        ("augpro-fgsm", {})]
        for method, extra in variants:
            label = " ".join([task, extra.get("mode", "kd"), method] +
                             [f"{k}={v}" for k, v in extra.items() if k != "mode"])
            folder = work / label.replace(" ", "_").replace("=", "-")
            _run(label, replace(base, augment=method, output_dir=str(folder), **extra), results)

    failed = [r for r in results if not r["ok"]]
    total = time.perf_counter() - t_start
    print(f"\n{len(results) - len(failed)} of {len(results)} runs passed in {total:.0f} s on {env['device']}",
          flush=True)
    for r in failed:
        print(f"  failed: {r['name']}: {r['error']}")
    if ns.out:
        Path(ns.out).write_text(json.dumps({"env": env, "results": results, "total_s": total}, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
