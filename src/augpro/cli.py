"""The ``augpro`` command.

``augpro teacher|distill|finetune`` train; ``evaluate`` scores a saved model; ``augment`` writes
augmented data; ``quickstart`` runs the main job; ``study``/``report`` run and summarise grids.
User errors print one line (``augpro: error: ...``) and exit with code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from augpro.config import DEFAULTS_VERSION, FGSM_EPS_DEFAULT, TrainConfig
from augpro.errors import UserError


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_data_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--task", default=None, help="GLUE task: sst2, cola, mrpc, rte, stsb, wnli, mnli, qnli, qqp "
                                              "(default sst2 unless --train-file is given)")
    g.add_argument("--data-dir", default=None, help="GLUE-layout folder (default: $AUGPRO_DATA_DIR)")
    g.add_argument("--from-hub", action="store_true", help="load the task from the Hugging Face hub (online)")
    g.add_argument("--train-file", default=None, help="custom CSV/TSV/JSONL training file")
    g.add_argument("--dev-file", default=None, help="custom CSV/TSV/JSONL dev file")
    g.add_argument("--text-columns", default=None, help="custom files: text column(s), 'a' or 'a,b'")
    g.add_argument("--label-column", default=None, help="custom files: label column")
    g.add_argument("--regression", action="store_true", help="custom files: the label is a real-valued score")
    g.add_argument("--train-size", type=_positive_int, default=None,
                   help="label-stratified, seeded, nested training subset of N rows")
    g.add_argument("--no-group-by-length", dest="group_by_length", action="store_false",
                   help="sample training batches uniformly instead of grouping similar lengths")
    g.add_argument("--dev-size", type=_positive_int, default=None,
                   help="evaluate on a stratified subset of N dev rows (quick checks; default: all)")
    g.add_argument("--val-size", type=_positive_int, default=None,
                   help="hold out N training rows (label-stratified, the same rows for every seed) as a "
                        "validation split: tune on it, keep dev for the final number; reported beside dev")
    g.add_argument("--max-length", type=int, default=128, help="truncation length (batches pad dynamically)")


def add_train_args(p: argparse.ArgumentParser, mode: str) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--output-dir", required=True, help="where the model, checkpoints, logs and metrics.json go")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--epochs", type=float, default=3.0)
    g.add_argument("--max-steps", type=int, default=-1, help="stop after N steps (overrides --epochs)")
    g.add_argument("--batch-size", type=_positive_int, default=32)
    g.add_argument("--eval-batch-size", type=_positive_int, default=128)
    g.add_argument("--learning-rate", type=float, default=None, help="default 5e-5 (teacher), 1e-4 (student)")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--warmup-ratio", type=float, default=0.1)
    g.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output-dir")
    g.add_argument("--no-checkpoints", dest="save_checkpoints", action="store_false",
                   help="do not keep epoch checkpoints (no --resume possible)")
    g.add_argument("--no-eval-every-epoch", dest="eval_every_epoch", action="store_false")
    g.add_argument("--no-cache", dest="cache", action="store_false", help="do not use the teacher-logit cache")
    g.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    g.add_argument("--bf16", action="store_true",
                   help="bf16 mixed precision (autocast) for the model trained: GPUs, and CPUs with native "
                        "bf16 (AVX512-BF16, AMX; elsewhere slower than fp32)")
    g.add_argument("--fp16", action="store_true", help="fp16 mixed precision (GPUs)")
    g.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")
    g.add_argument("--trust-remote-code", action="store_true", help="allow models with custom code (off by default)")
    g.add_argument("--defaults-version", type=int, default=DEFAULTS_VERSION, choices=sorted(FGSM_EPS_DEFAULT),
                   help=f"which set of defaults (default {DEFAULTS_VERSION}; 1 = the first, e.g. plain FGSM eps 1; "
                        "3 = bf16 teacher inference where the device has native bf16; 4 = 4-layer students with "
                        "hidden-state KD for sentence pairs)")
    m = p.add_argument_group("models")
    if mode == "teacher":
        m.add_argument("--model", default=None, help="base checkpoint folder or hub name (default: MiniLM-L6-H384)")
    else:
        if mode == "kd":
            m.add_argument("--teacher", required=True, help="fine-tuned teacher folder (from `augpro teacher`)")
        m.add_argument("--student", default=None, help="checkpoint the student's layers come from (default MiniLM-L6)")
        m.add_argument("--student-layers", default=None,
                       help="layer count (2) or indices (0,3) kept in the student (default: 2; 4 for sentence "
                            "pairs under --defaults-version 4)")
    if mode == "kd":
        k = p.add_argument_group("distillation loss")
        k.add_argument("--temperature", type=float, default=1.0)
        k.add_argument("--kd-weight", type=float, default=1.0)
        k.add_argument("--ce-weight", type=float, default=0.0)
        k.add_argument("--hidden-weight", type=float, default=None,
                       help="intermediate-layer KD: MSE between each student layer's hidden states and its teacher "
                            "layer's (mapped by --student-layers; a learned projection when widths differ); 0 = off "
                            "(default: 0; 1 for sentence pairs under --defaults-version 4)")
        k.add_argument("--attention-weight", type=float, default=0.0,
                       help="intermediate-layer KD: KL between the teacher's and the student's attention "
                            "distributions, layer by layer (TinyBERT-style); 0 = off")
        k.add_argument("--bf16-teacher", action=argparse.BooleanOptionalAction, default=None,
                       help="the teacher's inference in bf16 autocast: cached logits, pool labels, live targets "
                            "(speed and agreement with fp32: docs/performance.md). Default: on where the device has "
                            "native bf16 (CUDA with bf16, CPUs with AVX512-BF16 or AMX) under --defaults-version 3 "
                            "and later, off under 1 and 2")
    if mode in ("kd", "ft"):
        add_augment_args(p)


def add_augment_args(p: argparse.ArgumentParser, training: bool = True) -> None:
    from augpro.augment import METHODS

    a = p.add_argument_group("augmentation")
    a.add_argument("--augment" if training else "--method", dest="augment", default="none", choices=METHODS,
                   help="augmentation method")
    a.add_argument("--degree", type=_fraction, default=None,
                   help="share of eligible tokens changed, exactly (replacement default 0.3; AugPro default: "
                        "plain projection)")
    a.add_argument("--copies", type=_positive_int, default=1, help="augmented views per example")
    a.add_argument("--mix-alpha", type=float, default=0.4, help="Beta(alpha, alpha) for mixup weights")
    a.add_argument("--mix-granularity", choices=("sequence", "token"), default="sequence")
    a.add_argument("--fgsm-eps", type=float, default=None,
                   help="FGSM step in table std units (default 4 for augpro-fgsm, 0.1 for fgsm; "
                        "1 with --defaults-version 1)")
    a.add_argument("--projection-table", choices=("teacher", "student"), default=None)
    a.add_argument("--knn-k", type=_positive_int, default=16)
    if training:
        a.add_argument("--pool-labels", choices=("auto", "cached", "live"), default="auto",
                       help="offline pools (knn/mask/random/synonym/eda): label all copies with the teacher once "
                            "and cache (cached), per batch (live), or cached when training visits the whole pool (auto)")
    if training:
        a.add_argument("--aug-weight", type=float, default=1.0, help="weight of the augmented-data loss")
        a.add_argument("--shared-forward", action="store_true",
                       help="one student forward for a batch and its views (AugPro-Mix, token methods); AugPro-FGSM "
                            "and FGSM take their gradient from the original forward. The same losses without "
                            "dropout; with dropout other (equally valid) draws than the default path")


def config_from_args(ns: argparse.Namespace, mode: str) -> TrainConfig:
    names = {f.name for f in fields(TrainConfig)}
    values = {k: v for k, v in vars(ns).items() if k in names}
    values["mode"] = mode
    if not values.get("task") and not values.get("train_file"):
        values["task"] = "sst2"
    return TrainConfig(**values)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="augpro", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("teacher", help="fine-tune a teacher on gold labels")
    add_data_args(p)
    add_train_args(p, "teacher")
    p = sub.add_parser("distill", help="distil a layer-subset student from a teacher (KD)")
    add_data_args(p)
    add_train_args(p, "kd")
    p = sub.add_parser("finetune", help="fine-tune a layer-subset student on gold labels (FT, no teacher)")
    add_data_args(p)
    add_train_args(p, "ft")

    p = sub.add_parser("evaluate", help="dev metrics of a saved model")
    p.add_argument("--model", required=True, help="saved model folder")
    add_data_args(p)
    p.add_argument("--eval-batch-size", type=_positive_int, default=128)
    p.add_argument("--quiet", dest="progress", action="store_false")

    p = sub.add_parser("augment", help="write augmented copies of a dataset as JSONL")
    add_data_args(p)
    add_augment_args(p, training=False)
    p.add_argument("--teacher", default=None, help="teacher folder (AugPro/knn tables; default MiniLM-L6)")
    p.add_argument("--split", choices=("train", "dev"), default="train")
    p.add_argument("--output", required=True, help="output .jsonl file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=_positive_int, default=64)

    p = sub.add_parser("quickstart", help="the main job: a teacher, then KD, KD + AugPro-FGSM and FT students on SST-2")
    p.add_argument("--data-dir", default=None, help="GLUE-layout folder (default: $AUGPRO_DATA_DIR)")
    p.add_argument("--output-dir", default="runs/quickstart")
    p.add_argument("--train-size", type=_positive_int, default=2000, help="the students' rows (default 2000)")
    p.add_argument("--teacher-size", type=_positive_int, default=8000,
                   help="the teacher's rows, a superset of the students' (default 8000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", dest="progress", action="store_false")

    p = sub.add_parser("study", help="run a resumable grid of trainings from a YAML file")
    p.add_argument("config", help="study YAML file")
    p.add_argument("--output-dir", default=None, help="default: the YAML's output_dir")
    p.add_argument("--limit", type=int, default=None, help="run at most N more runs, then stop")
    p.add_argument("--dry-run", action="store_true", help="list the runs and exit")
    p.add_argument("--only", default=None, metavar="WORDS",
                   help='only the runs whose id or description has every word of WORDS, e.g. '
                        '"n=2000 kd augpro-fgsm seed=0" (descriptions: --dry-run); with --output-dir, '
                        'reruns one cell of a grid elsewhere to check it')
    p.add_argument("--prune", action="store_true",
                   help="move results lines of runs that are no longer in the config to results.pruned.jsonl, then exit")

    p = sub.add_parser("report", help="tables and plots from a study's results.jsonl")
    p.add_argument("results", help="results.jsonl")
    p.add_argument("--output", required=True, help="folder for the markdown and PNG files")

    p = sub.add_parser("compare", help="the same cells of two studies' results.jsonl, paired seed by seed")
    p.add_argument("a", help="results.jsonl A")
    p.add_argument("b", help="results.jsonl B (the table shows A - B)")
    p.add_argument("--labels", nargs=2, metavar=("A", "B"), default=None,
                   help="column names for A and B (default: the names of their folders)")
    p.add_argument("--output", default=None, help="markdown file to write (default: print it)")
    return parser


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    # one bar at a time: no "Loading weights" / "Writing model shards" bars inside a run's bar
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=UserWarning, module="torch.utils.data")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _print_metrics(result: dict[str, Any]) -> None:
    dev = ", ".join(f"{k}={v:.4f}" for k, v in result["dev"].items())
    print(f"{result['mode']} {result['task']}: dev {dev}  ({result['runtime_s']:.0f} s, "
          f"{result['parameters'] / 1e6:.1f}M parameters)")
    aug = result.get("augmentation", {})
    if aug.get("method", "none") != "none":
        bits = [f"{k}={v:.3f}" for k, v in aug.items() if k in ("realised_degree", "label_flip_rate")]
        print(f"augmentation {aug['method']}: " + ", ".join(bits))


def dispatch(ns: argparse.Namespace) -> int:
    cmd = ns.command
    if cmd in ("teacher", "distill", "finetune"):
        from augpro.runner import run_training

        mode = {"teacher": "teacher", "distill": "kd", "finetune": "ft"}[cmd]
        result = run_training(config_from_args(ns, mode))
        if result.get("is_main_process", True):
            _print_metrics(result)
            print(f"saved to {ns.output_dir}")
        return 0
    if cmd == "evaluate":
        from augpro.runner import evaluate_model

        cfg = config_from_args(ns, "teacher")
        metrics = evaluate_model(ns.model, cfg)
        print(json.dumps(metrics, indent=2))
        return 0
    if cmd == "augment":
        from augpro.offline import augment_to_jsonl

        n = augment_to_jsonl(ns)
        print(f"wrote {n} augmented examples to {ns.output}")
        return 0
    if cmd == "quickstart":
        from augpro.quickstart import run_quickstart

        if ns.teacher_size < ns.train_size:
            raise UserError(f"--teacher-size {ns.teacher_size} must be at least --train-size {ns.train_size}")
        run_quickstart(ns.output_dir, data_dir=ns.data_dir, train_size=ns.train_size, seed=ns.seed,
                       progress=ns.progress, teacher_size=ns.teacher_size)
        return 0
    if cmd == "study":
        from augpro.study import run_study

        return run_study(ns.config, output_dir=ns.output_dir, limit=ns.limit, dry_run=ns.dry_run, prune=ns.prune,
                         only=ns.only)
    if cmd == "report":
        from augpro.report import write_report

        write_report(ns.results, ns.output)
        return 0
    if cmd == "compare":
        from augpro.report_compare import compare

        text = compare(ns.a, ns.b, tuple(ns.labels) if ns.labels else None)
        if ns.output:
            Path(ns.output).write_text(text, encoding="utf-8")
            print(f"augpro compare: -> {ns.output}")
        else:
            print(text, end="")
        return 0
    raise UserError("name a command: teacher, distill, finetune, evaluate, augment, quickstart, study, report, "
                    "compare")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    ns = parser.parse_args(argv)
    if ns.version:
        from augpro import __version__

        print(__version__)
        return 0
    if not ns.command:
        parser.print_help()
        return 2
    _setup_logging()
    try:
        return dispatch(ns)
    except UserError as exc:
        # one line, always: messages quoting other tools (YAML, hub) may hold newlines
        message = " ".join(part.strip() for part in str(exc).splitlines() if part.strip())
        print(f"augpro: error: {message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("augpro: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
