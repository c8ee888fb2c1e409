"""Helpers shared by tests (batches from real rows, contexts, the kill-and-resume harness)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from augpro.augment.base import AugmentContext
from augpro.augment.project import allowed_vocab_mask, special_ids_tensor
from augpro.data import encode, pad_batch


def make_batch(split, tokenizer, n: int = 16, start: int = 0, max_length: int = 128):
    part = split.select(range(start, start + n))
    ds = encode(part, tokenizer, max_length)
    return pad_batch([ds[i] for i in range(len(ds))], tokenizer.pad_token_id)


def make_ctx(teacher, student, tokenizer, mode: str = "kd", batch=None) -> AugmentContext:
    def t_logits(b):
        if teacher is None:
            return None
        with torch.no_grad():
            return teacher(**{k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in b}).logits

    return AugmentContext(student=student, teacher=teacher, mode=mode, temperature=1.0, regression=False,
                          teacher_logits=t_logits, special_ids=special_ids_tensor(tokenizer),
                          allowed=allowed_vocab_mask(tokenizer, 30522))


# ------------------------------------------------------------------------------ kill and resume
def distill_args(data_dir: str, teacher: str, out: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The CLI command of the small kill-and-resume distillation run (3 epochs of 6 steps), plus ``extra`` flags."""
    return [sys.executable, "-m", "augpro.cli", "distill", "--task", "sst2", "--data-dir", data_dir,
            "--train-size", "96", "--dev-size", "128", "--teacher", teacher, "--student-layers", "1",
            "--batch-size", "16", "--epochs", "3", "--augment", "augpro-mix", "--degree", "0.3",
            "--max-length", "48", "--threads", "1", "--quiet", "--output-dir", str(out), *extra]


def kill_and_resume(tmp_path: Path, data_dir: str, extra: tuple[str, ...] = ()) -> tuple[dict, dict]:
    """Run the small distillation twice: once uninterrupted, once SIGKILLed after its first complete
    checkpoint and then resumed with ``--resume``. Returns the two ``metrics.json`` contents
    (uninterrupted, killed+resumed); the callers compare them."""
    from augpro.config import TrainConfig
    from augpro.distill import COMPLETE_MARKER, last_complete_checkpoint
    from augpro.runner import run_training

    teacher = tmp_path / "teacher"
    run_training(TrainConfig(mode="teacher", task="sst2", data_dir=data_dir, train_size=64, max_steps=2,
                             max_length=48, dev_size=64, output_dir=str(teacher), progress=False,
                             save_checkpoints=False, eval_every_epoch=False))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    full = tmp_path / "full"
    proc = subprocess.run(distill_args(data_dir, str(teacher), full, extra), capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]

    killed = tmp_path / "killed"
    p = subprocess.Popen(distill_args(data_dir, str(teacher), killed, extra), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 600
    while time.time() < deadline and not list(killed.glob(f"checkpoint-*/{COMPLETE_MARKER}")):
        if p.poll() is not None:
            pytest.fail("the run finished before it could be killed")
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert not (killed / "metrics.json").exists()
    assert last_complete_checkpoint(killed) is not None

    resumed = subprocess.run(distill_args(data_dir, str(teacher), killed, extra) + ["--resume"],
                             capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return (json.loads((full / "metrics.json").read_text()), json.loads((killed / "metrics.json").read_text()))
