"""The trainer for all three modes: a Hugging Face ``Trainer`` with a distillation ``compute_loss``.

Loss (DESIGN §2), KD mode::

    kd_weight * KD(T(x), S(x)) + aug_weight * mean_c KD(T(x_aug_c), S(x_aug_c)) + ce_weight * CE(S(x), y)

FT and teacher modes: ``CE(S(x), y) + aug_weight * mean_c CE(S(x_aug_c), y_aug_c)`` where an
augmented example inherits its source's gold label (mixup methods give mixed labels).

The trainer holds an :class:`~augpro.augment.base.Augmenter` (or none) and calls it the same
way whatever it is. Each step's augmentation generator is seeded from ``(seed, step, copy,
rank)``, so a resumed run draws exactly what an uninterrupted one would.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from augpro.augment.base import AugmentContext, Augmenter, teacher_view
from augpro.losses import kd_loss, label_loss

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
#: written last into a checkpoint folder; a folder without it is half-written and never loaded
COMPLETE_MARKER = "augpro_checkpoint_complete"


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Finished checkpoint folders in ``output_dir``, oldest first."""
    out = Path(output_dir)
    if not out.is_dir():
        return []
    found = [p for p in out.glob("checkpoint-*") if p.is_dir() and (p / COMPLETE_MARKER).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]) if p.name.split("-")[-1].isdigit() else -1)


def last_complete_checkpoint(output_dir: str | Path) -> str | None:
    """The newest finished checkpoint; half-written ones (no marker) are removed."""
    out = Path(output_dir)
    if not out.is_dir():
        return None
    for p in out.glob("checkpoint-*"):
        if p.is_dir() and not (p / COMPLETE_MARKER).is_file():
            shutil.rmtree(p, ignore_errors=True)
    done = complete_checkpoints(out)
    return str(done[-1]) if done else None


_LIBC: Any = None


def release_free_memory() -> None:
    """Hand the allocator's free heap pages back to the OS (glibc ``malloc_trim``; a no-op
    elsewhere). After a step's backward the activations are freed, but glibc keeps most of them
    resident for reuse; trimming keeps a long run's resident memory at what it actually uses."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL("libc.so.6")
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                _LIBC = libc
            except (OSError, AttributeError):  # musl and others: nothing to trim
                _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: batch[k] for k in MODEL_KEYS if k in batch}


class DistillTrainer(Trainer):
    """``Trainer`` subclass for teacher fine-tuning, KD and FT with any augmenter.

    Args (besides ``Trainer``'s):
        mode: ``teacher``, ``kd`` or ``ft``.
        teacher: frozen teacher (KD mode).
        augmenter: an augmenter or ``None``.
        copies: augmented views per batch.
        temperature, kd_weight, ce_weight, aug_weight: loss settings.
        regression: the task is regression.
        special_ids, allowed: token sets for augmenters.
        aug_seed: base seed of the per-step augmentation generators.
        retokenize: a :class:`~augpro.retokenize.Retokenizer` when teacher and student tokenize
            differently (batches then carry the teacher's own ``teacher_input_ids`` ...).
        trim_memory: return freed heap memory to the OS after every step (:func:`release_free_memory`).
    """

    def __init__(self, *args: Any, mode: str, teacher: nn.Module | None = None, augmenter: Augmenter | None = None,
                 copies: int = 1, temperature: float = 1.0, kd_weight: float = 1.0, ce_weight: float = 0.0,
                 aug_weight: float = 1.0, regression: bool = False, special_ids: torch.Tensor | None = None,
                 allowed: torch.Tensor | None = None, aug_seed: int = 0, retokenize: Any = None,
                 trim_memory: bool = True, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.mode = mode
        self.teacher = teacher
        if teacher is not None:
            self.teacher.to(self.args.device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        self.augmenter = augmenter
        self.copies = copies
        self.temperature = temperature
        self.kd_weight = kd_weight
        self.ce_weight = ce_weight
        self.aug_weight = aug_weight
        self.regression = regression
        self.special_ids = special_ids if special_ids is not None else torch.zeros(0, dtype=torch.long)
        self.allowed = allowed
        self.aug_seed = aug_seed
        self.retokenize = retokenize
        self.trim_memory = trim_memory
        self._window: dict[str, list[float]] = defaultdict(list)
        self.totals: dict[str, float] = defaultdict(float)

    def training_step(self, model: nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(model, inputs, *args, **kwargs)
        if self.trim_memory:
            release_free_memory()
        return loss

    # ---------------------------------------------------------------- loss
    def _generator(self, copy: int) -> torch.Generator:
        rank = self.args.process_index
        seed = ((self.aug_seed * 1_000_003 + self.state.global_step) * 64 + copy) * 4096 + rank
        return torch.Generator().manual_seed(seed % (2**63 - 1))

    @torch.no_grad()
    def _teacher_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "teacher_logits" in batch:
            return batch["teacher_logits"].float()
        return self.teacher(**(teacher_view(batch) or model_inputs(batch))).logits.float()

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None):
        labels = inputs["labels"]
        outputs = model(**model_inputs(inputs))
        s = outputs.logits
        t = None
        if self.mode == "kd":
            t = self._teacher_logits(inputs)
            loss = self.kd_weight * kd_loss(t, s, self.temperature, self.regression)
            if self.ce_weight:
                loss = loss + self.ce_weight * label_loss(s, labels, self.regression)
        else:
            loss = label_loss(s, labels, self.regression)
        self._record("loss_orig", float(loss.detach()))

        if self.augmenter is not None and model.training and self.aug_weight:
            ctx = AugmentContext(
                student=self.accelerator.unwrap_model(model),
                teacher=self.teacher,
                mode="kd" if self.mode == "kd" else "ft",
                temperature=self.temperature,
                regression=self.regression,
                teacher_logits=(lambda _b, _t=t: _t),
                special_ids=self.special_ids.to(s.device),
                allowed=self.allowed,
                teacher_batch=teacher_view(inputs),
                retokenize=self.retokenize,
            )
            for copy in range(self.copies):
                aug = self.augmenter.augment(inputs, ctx, self._generator(copy), copy)
                s_aug = model(**aug.student_inputs).logits
                if self.mode == "kd":
                    if aug.teacher_logits is not None:
                        t_aug = aug.teacher_logits.float()
                    else:
                        with torch.no_grad():
                            t_aug = self.teacher(**aug.teacher_inputs).logits.float()
                    aug_loss = kd_loss(t_aug, s_aug, self.temperature, self.regression)
                    if not self.regression:
                        self._record("label_flip_rate", float((t_aug.argmax(-1) != t.argmax(-1)).float().mean()))
                else:
                    target = aug.soft_labels if aug.soft_labels is not None else labels
                    aug_loss = label_loss(s_aug, target, self.regression)
                loss = loss + self.aug_weight * aug_loss / self.copies
                self._record("loss_aug", float(aug_loss.detach()))
                if aug.changed is not None:
                    self._record("aug_degree", float(aug.degree.mean()))
                    self.totals["changed"] += float(aug.changed.sum())
                    self.totals["eligible"] += float(aug.eligible.sum())
                    self.totals["examples"] += float(aug.changed.numel())
                    self.totals["degree_sum"] += float(aug.degree.sum())
                for k, v in aug.extra.items():
                    self._record(f"aug_{k}", v)
        return (loss, outputs) if return_outputs else loss

    def _record(self, key: str, value: float) -> None:
        self._window[key].append(value)
        if key == "label_flip_rate":
            self.totals["flip_sum"] += value
            self.totals["flip_n"] += 1

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:  # a training log: add the window's augmentation statistics
            for key, values in self._window.items():
                if values:
                    logs[key] = round(sum(values) / len(values), 4)
            self._window.clear()
        super().log(logs, *args, **kwargs)

    def augmentation_summary(self) -> dict[str, float]:
        """Whole-run statistics: realised degree (mean per example, and pooled) and flip rate."""
        out: dict[str, float] = {}
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            keys = ("examples", "degree_sum", "changed", "eligible", "flip_sum", "flip_n")
            t = torch.tensor([float(self.totals.get(k, 0.0)) for k in keys], dtype=torch.float64)
            torch.distributed.all_reduce(t)  # statistics over every process's augmented data
            self.totals.update(dict(zip(keys, t.tolist())))
        if self.totals.get("examples"):
            out["realised_degree"] = self.totals["degree_sum"] / self.totals["examples"]
            out["changed_share_pooled"] = self.totals["changed"] / max(1.0, self.totals["eligible"])
        if self.totals.get("flip_n"):
            out["label_flip_rate"] = self.totals["flip_sum"] / self.totals["flip_n"]
        return out

    # ---------------------------------------------------------------- checkpoints
    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        """Save as ``Trainer`` does, then mark the folder complete (fsync'd) and drop older ones."""
        super()._save_checkpoint(model, trial)
        if not self.args.should_save:
            return
        folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
        marker = folder / COMPLETE_MARKER
        tmp = folder / (COMPLETE_MARKER + ".tmp")
        with open(tmp, "w") as fh:
            fh.write(str(self.state.global_step))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, marker)
        for old in Path(self.args.output_dir).glob("checkpoint-*"):
            if old != folder and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    # ---------------------------------------------------------------- eval
    def prediction_step(self, model: nn.Module, inputs: dict[str, Any], prediction_loss_only: bool,
                        ignore_keys: list[str] | None = None):
        inputs = self._prepare_inputs(inputs)
        with torch.no_grad():
            logits = model(**model_inputs(inputs)).logits
        return None, logits.detach(), inputs["labels"]
