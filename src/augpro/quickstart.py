"""The main job: fine-tune a teacher on SST-2, then train three 2-layer students on a smaller
transfer set of the same rows (KD, KD + AugPro-FGSM, and FT without a teacher) and print a
comparison table.

AugPro-FGSM is the augmentation the deciding grid found best at this transfer-set size
(``configs/strong-teacher.yaml``, SST-2 n = 2,000, 5 paired seeds: docs/results.md). The
students train as that grid's do (bf16 autocast for student and teacher, one student forward
for a batch and its view), only for fewer passes.

The teacher sees more rows than the students (``teacher_size``, default 8,000, all of them
containing the students' ``train_size`` rows: subsets are nested), because a teacher that knows
no more than its student's labels has nothing to give (docs/results.md). The full 67,349-row
teacher of the results study takes about an hour on two cores, too long for a first command;
the printed table says what this teacher saw. Finished stages are reused: a rerun with the same
output folder skips what is done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from augpro.config import TrainConfig
from augpro.runner import run_training

#: the students' recipe: lr 1e-4 as in the results study (the pilot's better rate), 6 passes (378 steps;
#: the pilot's curves at n=2,000 are within about a point of their plateau by ~400; 8 passes took the
#: whole first command past 10 minutes on a fresh 2-core machine)
STUDENT_EPOCHS = 6
STUDENT_LR = 1e-4
#: the teacher's recipe: 2 passes over its rows, bf16 autocast (the CPU's AVX-512 BF16, or a GPU)
TEACHER_EPOCHS = 2
#: the augmentation of the third student: the deciding grid's best at n = 2,000 (docs/results.md)
AUGMENT = "augpro-fgsm"
AUGMENT_NAME = "AugPro-FGSM"


def _stage(cfg: TrainConfig) -> dict[str, Any]:
    done = Path(cfg.output_dir) / "metrics.json"
    if done.is_file():
        print(f"[reuse] {cfg.output_dir} is finished")
        return json.loads(done.read_text())
    print(f"[run] {cfg.mode}{' + ' + cfg.augment if cfg.augment != 'none' else ''} -> {cfg.output_dir}")
    return run_training(cfg)


def format_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A markdown table: model, rows trained on, dev score, parameters, layers, runtime."""
    lines = ["| model | training rows | dev accuracy | parameters | layers | runtime (s) |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['train_examples']:,} | {r['dev']['score']:.4f} | {r['parameters'] / 1e6:.1f}M | "
                     f"{r['layers']} | {r['runtime_s']:.0f} |")
    return "\n".join(lines)


def run_quickstart(output_dir: str, data_dir: str | None = None, train_size: int = 2000, seed: int = 0,
                   progress: bool = True, teacher_size: int | None = 8000) -> str:
    """Run the four stages on SST-2 and return (and print) the table.

    ``teacher_size``: the teacher's training rows (``None``: the full training split);
    ``train_size``: the students' transfer set, a subset of the teacher's rows.
    """
    out = Path(output_dir)
    common = dict(task="sst2", data_dir=data_dir, seed=seed, progress=progress, save_checkpoints=False,
                  max_length=64)
    teacher = _stage(TrainConfig(mode="teacher", epochs=TEACHER_EPOCHS, train_size=teacher_size, bf16=True,
                                 output_dir=str(out / "teacher"), **common))
    # the deciding grid's precision and forward (docs/performance.md: ~0.55-0.8 of the fp32 cost per run)
    student = dict(student_layers="2", epochs=STUDENT_EPOCHS, learning_rate=STUDENT_LR, train_size=train_size,
                   eval_every_epoch=False, bf16=True, bf16_teacher=True, shared_forward=True, **common)
    kd = _stage(TrainConfig(mode="kd", teacher=str(out / "teacher"), output_dir=str(out / "kd-student"), **student))
    aug = _stage(TrainConfig(mode="kd", teacher=str(out / "teacher"), augment=AUGMENT,
                             output_dir=str(out / f"kd-{AUGMENT}-student"), **student))
    ft = _stage(TrainConfig(mode="ft", output_dir=str(out / "ft-student"), **student))
    table = format_table([("teacher (MiniLM-L6, fine-tuned)", teacher), ("KD student (2 layers)", kd),
                          (f"KD + {AUGMENT_NAME} student (2 layers)", aug), ("FT student (2 layers, no teacher)", ft)])
    seen = "the full training split" if teacher_size is None else f"{teacher['train_examples']:,} training rows"
    print(f"\nSST-2, seed {seed}, dev set of {teacher['dev_examples']} rows. The teacher saw {seen}; the students "
          f"saw {kd['train_examples']:,} of them (KD students: the teacher's soft labels; FT: the gold labels).\n")
    print(table)
    (out / "table.md").write_text(table + "\n")
    return table
