"""What every benchmark figure shares: sizes per mode, timing, reporting, models and data.

Timing rules (the machine may be shared): every figure times its contenders *in the same
process*, *interleaved* (one repetition of each in turn, the order reversed every other round
so a drifting load hits all alike), after a warm-up round, and reports the ratio of the
*medians* with the absolute medians beside it.
"""

from __future__ import annotations

import atexit
import os
import platform
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

MODES = ("tiny", "quick", "full")


class Skip(Exception):
    """Raised by a figure whose optional dependency (nlpaug, WordNet, ...) is missing: the figure
    is reported as skipped with this reason and the other figures still run."""


@dataclass
class Report:
    """Collects and prints ``RATIO``/``TARGET``/``VALUE`` lines (``VALUE``: absolute figures)."""

    ratios: dict[str, float] = field(default_factory=dict)
    targets: list[tuple[str, str, float, float, bool]] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    quiet: bool = False

    def _print(self, line: str) -> None:
        if not self.quiet:
            print(line, flush=True)

    def section(self, title: str) -> None:
        self._print(f"\n== {title}")

    def note(self, text: str) -> None:
        self._print(f"   {text}")

    def skip(self, figure: str, reason: str) -> None:
        """``SKIPPED <figure>: <reason>`` (a missing optional dependency)."""
        self.skipped[figure] = reason
        self._print(f"SKIPPED {figure}: {reason}")

    def value(self, name: str, value: float | str, unit: str = "") -> None:
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        self.values[name] = f"{text}{(' ' + unit) if unit else ''}"
        self._print(f"VALUE {name} {text}{(' ' + unit) if unit else ''}")

    def ratio(self, name: str, value: float, detail: str = "") -> None:
        self.ratios[name] = value
        self._print(f"RATIO {name} {value:.3f}" + (f"   ({detail})" if detail else ""))

    def target(self, name: str, op: str, bound: float, value: float | None = None) -> bool:
        """``TARGET name op bound PASS|FAIL`` for a ratio already reported (or ``value``)."""
        value = self.ratios[name] if value is None else value
        ok = value <= bound if op == "<=" else value >= bound
        self.targets.append((name, op, bound, value, ok))
        self._print(f"TARGET {name} {op} {bound:g} {'PASS' if ok else 'FAIL'}   (measured {value:.3f})")
        return ok


def machine_header(threads: int) -> list[str]:
    """Machine, torch version and threads: printed before any figure."""
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ""
    if hasattr(os, "getloadavg"):
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    import transformers

    return [
        f"# machine: {platform.platform()} | cpu: {cpu or 'unknown'} | cpu_count: {os.cpu_count()}",
        f"# python {platform.python_version()} | torch {torch.__version__} | transformers {transformers.__version__}"
        f" | torch threads: {threads} (interop {torch.get_num_interop_threads()})",
        f"# load average at start (1/5/15 min): {load}",
    ]


# ------------------------------------------------------------------------------------------ timing
def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def interleaved(fns: dict[str, Callable[[], Any]], reps: int, warmup: int = 1) -> dict[str, list[float]]:
    """Wall-clock seconds of each callable, ``reps`` times each, interleaved (after ``warmup``)."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + reps):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            t0 = time.perf_counter()
            fns[n]()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[n].append(dt)
    return times


def fmt_s(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.3f} s"
    return f"{seconds * 1e3:.1f} ms"


# ------------------------------------------------------------------------------------------ data
def data_dir() -> str:
    d = os.environ.get("AUGPRO_DATA_DIR")
    if d:
        return d
    guess = Path(__file__).resolve().parents[2] / "shared" / "data" / "glue"
    return str(guess)


_CACHE: dict[str, Any] = {}


def sst2_train():
    """SST-2's training split (GLUE TSV under ``$AUGPRO_DATA_DIR``)."""
    if "sst2" not in _CACHE:
        from augpro.data import load_glue_split
        from augpro.tasks import get_task

        _CACHE["sst2"] = load_glue_split(get_task("sst2"), "train", data_dir())
    return _CACHE["sst2"]


def tokenizer():
    if "tok" not in _CACHE:
        from augpro.models import load_tokenizer

        _CACHE["tok"] = load_tokenizer(None)
    return _CACHE["tok"]


def teacher_and_student(tiny: bool = False, layers: str = "2"):
    """The MiniLM-L6 teacher (pretrained encoder, a fresh 2-class head: timing does not depend on
    the head's weights) and a layer-subset student; tiny random BERTs in ``tiny`` mode."""
    key = ("models", tiny, layers)
    if key in _CACHE:  # figures share them: timing does not depend on the student's weights
        return _CACHE[key]
    _CACHE[key] = _load_models(tiny, layers)
    return _CACHE[key]


def _load_models(tiny: bool, layers: str):
    from augpro.models import load_classifier, make_layer_subset_student
    from augpro.tasks import get_task

    task = get_task("sst2")
    if tiny:
        from transformers import BertConfig, BertForSequenceClassification

        torch.manual_seed(0)
        cfg = dict(vocab_size=30522, hidden_size=32, num_attention_heads=2, intermediate_size=64, num_labels=2)
        teacher = BertForSequenceClassification(BertConfig(num_hidden_layers=2, **cfg)).eval()
        student = BertForSequenceClassification(BertConfig(num_hidden_layers=2, **cfg))
        student = make_layer_subset_student(student, "1")
        return teacher, student
    torch.manual_seed(0)
    teacher = load_classifier(None, task).eval()
    student = make_layer_subset_student(load_classifier(None, task), layers)
    return teacher, student


#: the fine-tuned SST-2 teacher of the figures that need one (bf16 agreement, whole runs): the
#: methods study's teacher budget (2,000 rows, 200 steps of batch 32, max length 64); tiny: 2 steps
TEACHER_BUDGET = {"tiny": dict(train_size=64, max_steps=2, max_length=32),
                  "quick": dict(train_size=2000, max_steps=200, max_length=64),
                  "full": dict(train_size=2000, max_steps=200, max_length=64)}


def fine_tuned_teacher(mode: str) -> str:
    """A fine-tuned MiniLM-L6 SST-2 teacher folder: ``$AUGPRO_BENCH_TEACHER`` if set, else one
    trained once with :data:`TEACHER_BUDGET` (seed 0; fp32) and kept in augpro's cache folder
    (a few minutes on one core the first time)."""
    given = os.environ.get("AUGPRO_BENCH_TEACHER")
    if given and mode != "tiny":
        return given
    from augpro.cache import cache_dir
    from augpro.config import TrainConfig
    from augpro.runner import run_training

    budget = TEACHER_BUDGET[mode]
    folder = cache_dir() / "bench-teachers" / ("sst2-{train_size}-{max_steps}-{max_length}-v1".format(**budget))
    if not (folder / "metrics.json").is_file():
        threads = torch.get_num_threads()
        try:
            run_training(TrainConfig(mode="teacher", task="sst2", data_dir=data_dir(), seed=0, batch_size=32,
                                     eval_batch_size=256, output_dir=str(folder), progress=False,
                                     save_checkpoints=False, eval_every_epoch=False, cache=False, **budget))
        finally:
            torch.set_num_threads(threads)
    return str(folder)


def encoded_rows(n: int, start: int = 0, with_logits_of: torch.nn.Module | None = None):
    """The first ``n`` SST-2 training rows, tokenized (max length 128), optionally with the
    teacher's logits attached (the runner's teacher cache)."""
    from augpro.data import encode
    from augpro.runner import predict_logits

    split = sst2_train().select(range(start, start + n))
    ds = encode(split, tokenizer(), 128)
    if with_logits_of is not None:
        ds.attach("teacher_logits", predict_logits(with_logits_of, ds.encodings, 128, tokenizer().pad_token_id))
    return ds


def token_sets(vocab_size: int = 30522):
    from augpro.augment.project import allowed_vocab_mask, special_ids_tensor

    tok = tokenizer()
    return special_ids_tensor(tok), allowed_vocab_mask(tok, vocab_size)


def make_trainer(student, teacher, train_ds, augmenter, batch_size: int = 32, trainer_cls=None, seed: int = 0,
                 shared_forward: bool = False, bf16: bool = False, bf16_teacher: bool = False):
    """A :class:`~augpro.distill.DistillTrainer` as the runner builds it (KD mode), optimizer made.

    ``bf16``: the student's forward runs under bf16 autocast as ``Trainer.train`` sets it up
    (``accelerator.prepare_model`` wraps ``forward``); that trainer gets its own copy of the student,
    so the fp32 trainers sharing ``student`` are not affected. ``shared_forward``/``bf16_teacher``:
    :class:`~augpro.distill.DistillTrainer`'s settings of those names.
    """
    import copy
    import warnings

    from transformers import TrainingArguments

    from augpro.data import Collator
    from augpro.distill import DistillTrainer

    special, allowed = token_sets(student.get_input_embeddings().weight.shape[0])
    out = tempfile.mkdtemp(prefix="augpro-bench-")
    atexit.register(shutil.rmtree, out, True)  # the trainer writes nothing worth keeping
    args = TrainingArguments(
        output_dir=out, per_device_train_batch_size=batch_size, learning_rate=1e-4, max_steps=10_000,
        report_to=[], use_cpu=True, disable_tqdm=True, remove_unused_columns=False, label_names=["labels"],
        save_strategy="no", logging_strategy="no", dataloader_num_workers=0, seed=seed, data_seed=seed, bf16=bf16,
    )
    if bf16:
        student = copy.deepcopy(student)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = (trainer_cls or DistillTrainer)(
            model=student, args=args, train_dataset=train_ds, data_collator=Collator(tokenizer().pad_token_id, False),
            mode="kd", teacher=teacher, augmenter=augmenter, special_ids=special, allowed=allowed, aug_seed=seed,
            shared_forward=shared_forward, bf16_teacher=bf16_teacher)
    if bf16:
        trainer.accelerator.prepare_model(trainer.model)  # wraps forward in bf16 autocast, in place
        if not hasattr(trainer.model, "_original_forward"):
            raise RuntimeError("accelerate did not enable bf16 autocast on this machine")
    trainer.create_optimizer()
    trainer.current_gradient_accumulation_steps = 1  # set by train(); training_step reads it
    return trainer


def train_step(trainer, batch) -> float:
    """One optimisation step as ``Trainer.train`` takes it: forward/backward, optimizer, zero grad."""
    loss = trainer.training_step(trainer.model, batch)
    trainer.optimizer.step()
    trainer.optimizer.zero_grad(set_to_none=True)
    trainer.state.global_step += 1
    return float(loss)


def batches(ds, batch_size: int, n_batches: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """``n_batches`` random batches (dynamic padding, the runner's collator)."""
    from augpro.data import Collator

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(ds), generator=g).tolist()
    collate = Collator(tokenizer().pad_token_id, False)
    out = []
    for b in range(n_batches):
        idx = [order[(b * batch_size + i) % len(order)] for i in range(batch_size)]
        out.append(collate([ds[i] for i in idx]))
    return out
