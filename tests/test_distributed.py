"""Data-parallel training on 2 CPU processes (gloo): KD + AugPro-Mix completes, replicas agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_process_kd_augpro_mix(launcher, tmp_path, data_dir):
    from augpro.config import TrainConfig
    from augpro.runner import run_training

    teacher = tmp_path / "teacher"
    run_training(TrainConfig(mode="teacher", task="sst2", data_dir=data_dir, train_size=64, max_steps=2, max_length=48,
                             dev_size=64, output_dir=str(teacher), progress=False, save_checkpoints=False,
                             eval_every_epoch=False))
    out = tmp_path / "student"
    if launcher == "torchrun":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "augpro.cli"]
    else:
        # accelerate's multi-process launcher; with no GPU augpro runs DDP over gloo on the CPU
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "augpro.cli"]
    cmd += ["distill", "--task", "sst2", "--data-dir", data_dir, "--train-size", "64", "--dev-size", "64",
            "--teacher", str(teacher), "--student-layers", "1", "--max-steps", "4", "--batch-size", "8",
            "--augment", "augpro-mix", "--degree", "0.3", "--max-length", "48", "--threads", "1", "--quiet",
            "--no-checkpoints", "--output-dir", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    hashes = metrics["replica_weight_sha256"]
    assert len(hashes) == 2 and hashes[0] == hashes[1], "replicas diverged"
    assert metrics["steps"] == 4 and 0.0 <= metrics["dev"]["accuracy"] <= 1.0
    # data was sharded: 4 steps of 8 rows on each of 2 ranks cover 64 rows = 1 epoch
    assert metrics["train_examples"] == 64
    assert proc.stdout.count("saved to") == 1, "only rank 0 reports and writes"
    print(proc.stdout.strip().splitlines()[-3:])
