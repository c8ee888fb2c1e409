"""Paired comparison: students trained in fp32 and with bf16 autocast, same seeds (not a figure).

``python -m benchmarks.bf16_students [--seeds 0 1 2] [--method augpro-mix] [--ways fp32 bf16]``

For each seed, KD students on SST-2 (2,000 rows, the methods study's budget: 80 steps of batch 32,
learning rate 5e-4, max length 64, 2 layers, one thread) from the fine-tuned benchmark teacher
(:func:`benchmarks._common.fine_tuned_teacher`), once per way:

* ``fp32`` — fp32 student and teacher (``--no-bf16-teacher``: defaults version 3 would put a
  native-bf16 CPU's teacher in bf16);
* ``bf16`` — ``--bf16 --bf16-teacher`` (student and teacher under bf16 autocast);
* ``new`` — ``--bf16 --bf16-teacher --shared-forward`` (what figure 7 times).

Prints one line per run (dev accuracy, core-seconds) and per way the mean dev accuracy, the mean
and spread of the paired differences to ``fp32``, and how many dev predictions differ. Each run
uses its own empty cache folder, so the teacher labels its training rows in each way.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

WAYS = {"fp32": {"bf16_teacher": False}, "bf16": {"bf16": True, "bf16_teacher": True},
        "new": {"bf16": True, "bf16_teacher": True, "shared_forward": True}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bf16_students", description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", default="augpro-mix")
    parser.add_argument("--ways", nargs="+", choices=list(WAYS), default=["fp32", "bf16"])
    args = parser.parse_args(argv)

    import numpy as np
    from transformers.utils import logging as hf_logging

    from augpro.config import TrainConfig
    from augpro.data import encode
    from augpro.models import load_classifier, load_tokenizer
    from augpro.runner import load_data, predict_logits, run_training
    from benchmarks import _common as C

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    teacher = C.fine_tuned_teacher("full")
    print(f"# teacher {teacher} | seeds {args.seeds} | {args.method} | load {os.getloadavg()}", flush=True)
    scratch = Path(tempfile.mkdtemp(prefix="augpro-bf16-students-"))
    dev: dict[tuple[str, int], float] = {}
    preds: dict[tuple[str, int], np.ndarray] = {}
    try:
        for seed in args.seeds:
            for way in args.ways if seed % 2 == 0 else args.ways[::-1]:
                out = scratch / f"{way}-{seed}"
                cfg = TrainConfig(mode="kd", task="sst2", data_dir=C.data_dir(), train_size=2000, max_length=64,
                                  teacher=teacher, student_layers="2", learning_rate=5e-4, batch_size=32,
                                  eval_batch_size=256, max_steps=80, seed=seed, augment=args.method,
                                  output_dir=str(out), progress=False, save_checkpoints=False,
                                  eval_every_epoch=False, threads=1, **WAYS[way])
                os.environ["AUGPRO_CACHE"] = str(scratch / f"cache-{way}-{seed}")
                c0 = time.process_time()
                result = run_training(cfg)
                cpu = time.process_time() - c0
                dev[(way, seed)] = result["dev"]["score"]
                # the saved student's dev predictions in fp32 (which rows changed between ways)
                data = load_data(cfg)
                model = load_classifier(str(out), data.task, require_head=True)
                ds = encode(data.dev, load_tokenizer(str(out)), 64)
                preds[(way, seed)] = predict_logits(model, ds.encodings, 256).argmax(-1).numpy()
                print(f"{way:5s} seed {seed}: dev accuracy {dev[(way, seed)]:.4f} | {cpu:.1f} core-s | "
                      f"train loss {result['train_loss']:.4f} | load {os.getloadavg()[0]:.2f}", flush=True)
                shutil.rmtree(out, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = args.ways[0]
    for way in args.ways:
        accs = [dev[(way, s)] for s in args.seeds]
        line = f"{way:5s}: mean dev accuracy {statistics.mean(accs):.4f} (seeds {', '.join(f'{a:.4f}' for a in accs)})"
        if way != base:
            diffs = [dev[(way, s)] - dev[(base, s)] for s in args.seeds]
            changed = [int((preds[(way, s)] != preds[(base, s)]).sum()) for s in args.seeds]
            spread = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            line += (f" | paired difference to {base}: mean {statistics.mean(diffs):+.4f}, sd {spread:.4f}, "
                     f"per seed {', '.join(f'{d:+.4f}' for d in diffs)} | dev predictions that differ: "
                     f"{', '.join(map(str, changed))} of {len(preds[(base, args.seeds[0])])}")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
