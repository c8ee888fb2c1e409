"""The main job: fine-tune a teacher on SST-2, distil a 2-layer student from it, fine-tune the
same student without a teacher, and print a comparison table.

Finished stages are reused: a rerun with the same output folder skips what is done.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from augpro.config import TrainConfig
from augpro.runner import run_training


def _stage(cfg: TrainConfig) -> dict[str, Any]:
    done = Path(cfg.output_dir) / "metrics.json"
    if done.is_file():
        print(f"[reuse] {cfg.output_dir} is finished")
        return json.loads(done.read_text())
    print(f"[run] {cfg.mode} -> {cfg.output_dir}")
    return run_training(cfg)


def format_table(rows: list[tuple[str, dict[str, Any]]]) -> str:
    """A markdown table: model, dev score, parameters, layers, runtime."""
    lines = ["| model | dev accuracy | parameters | layers | runtime (s) |", "|---|---:|---:|---:|---:|"]
    for name, r in rows:
        lines.append(f"| {name} | {r['dev']['score']:.4f} | {r['parameters'] / 1e6:.1f}M | {r['layers']} | "
                     f"{r['runtime_s']:.0f} |")
    return "\n".join(lines)


def run_quickstart(output_dir: str, data_dir: str | None = None, train_size: int = 2000, seed: int = 0,
                   progress: bool = True) -> str:
    """Run the three stages on SST-2 and return (and print) the table."""
    out = Path(output_dir)
    common = dict(task="sst2", data_dir=data_dir, train_size=train_size, seed=seed, progress=progress,
                  save_checkpoints=False)
    teacher = _stage(TrainConfig(mode="teacher", epochs=3, output_dir=str(out / "teacher"), **common))
    kd = _stage(TrainConfig(mode="kd", teacher=str(out / "teacher"), student_layers="2", epochs=5,
                            output_dir=str(out / "kd-student"), **common))
    ft = _stage(TrainConfig(mode="ft", student_layers="2", epochs=5, output_dir=str(out / "ft-student"), **common))
    table = format_table([("teacher (MiniLM-L6, fine-tuned)", teacher), ("KD student (2 layers)", kd),
                          ("FT student (2 layers)", ft)])
    print(f"\nSST-2, {train_size} training rows, seed {seed}, dev set of {teacher['dev_examples']} rows\n")
    print(table)
    (out / "table.md").write_text(table + "\n")
    return table
