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

import contextlib
import ctypes
import inspect
import os
import shutil
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer

from augpro.augment.base import AugmentContext, AugmentedBatch, Augmenter, teacher_view
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


def stack_inputs(parts: list[dict[str, torch.Tensor]], pad_token_id: int = 0) -> dict[str, torch.Tensor] | None:
    """Model inputs of several batches stacked along the batch dimension, for one forward over all
    of them; rows are right-padded to the longest part (``pad_token_id``, attention mask and token
    types 0: padding a row does not change its outputs at its real positions).

    Returns ``None`` when the parts cannot share a forward: a part without ``input_ids`` (virtual
    ``inputs_embeds``), with keys other than :data:`MODEL_KEYS`, or with different keys.
    """
    keys = set(parts[0])
    if "input_ids" not in keys or not keys <= set(MODEL_KEYS) or any(set(p) != keys for p in parts[1:]):
        return None
    length = max(p["input_ids"].shape[1] for p in parts)
    fill = {"input_ids": pad_token_id}
    return {k: torch.cat([nn.functional.pad(p[k], (0, length - p[k].shape[1]), value=fill.get(k, 0))
                          for p in parts]) for k in parts[0]}


def same_rows(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B]`` bool: the rows on which two batches of model inputs are the same input (equal ids,
    attention mask and token types at every position, after padding both to one length). All
    ``False`` when they cannot be compared (different keys or batch sizes, embeddings)."""
    keys = set(a)
    rows = a["input_ids"].shape[0] if "input_ids" in a else -1
    if "input_ids" not in keys or set(b) != keys or b["input_ids"].shape[0] != rows:
        return torch.zeros(max(rows, 0), dtype=torch.bool, device=a["input_ids"].device if rows >= 0 else None)
    length = max(a["input_ids"].shape[1], b["input_ids"].shape[1])
    same = torch.ones(rows, dtype=torch.bool, device=a["input_ids"].device)
    for k in keys:
        x = nn.functional.pad(a[k], (0, length - a[k].shape[1]))
        y = nn.functional.pad(b[k], (0, length - b[k].shape[1]))
        same &= (x == y).all(1)
    return same


def take_rows(batch: dict[str, torch.Tensor], rows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Some rows of a batch of model inputs, without the trailing columns none of them attends to."""
    part = {k: v[rows] for k, v in batch.items()}
    mask = part.get("attention_mask")
    if mask is not None and mask.numel():
        used = mask.bool().any(0).nonzero()
        length = int(used.max()) + 1 if used.numel() else 1
        part = {k: v[:, :length] for k, v in part.items()}
    return part


def split_outputs(outputs: Any, sizes: list[int], lengths: list[int]) -> list[Any]:
    """Per-part outputs of one forward over :func:`stack_inputs`: every tensor field (and every
    tensor in a tuple field, e.g. ``hidden_states``) whose first dimension is the stacked batch is
    split along it; ``[B, L, d]`` tensors are cut back to the part's own length ``L``, attention
    maps ``[B, H, L, L]`` likewise. Other fields are shared by all parts."""
    total = sum(sizes)

    def cut(x: torch.Tensor, length: int) -> torch.Tensor:
        if x.dim() == 3:
            return x[:, :length]
        if x.dim() == 4:
            return x[:, :, :length, :length]
        return x

    def pieces(value: Any) -> list[Any] | None:
        if torch.is_tensor(value) and value.dim() and value.shape[0] == total:
            return [cut(x, n) for x, n in zip(value.split(sizes), lengths)]
        if isinstance(value, tuple) and value and all(torch.is_tensor(v) and v.dim() and v.shape[0] == total
                                                      for v in value):
            split = [pieces(v) for v in value]
            return [tuple(s[i] for s in split) for i in range(len(sizes))]
        return None

    fields = {k: v for k, v in outputs.items()}
    per_part: list[dict[str, Any]] = [{} for _ in sizes]
    for key, value in fields.items():
        chunks = pieces(value)
        for i, part in enumerate(per_part):
            part[key] = chunks[i] if chunks is not None else value
    return [type(outputs)(**part) for part in per_part]


def _user_defaults(trainer_kwargs: dict[str, Any], mode: str | None, teacher: nn.Module | None,
                   augmenter: Augmenter | None, regression: bool | None, special_ids: torch.Tensor | None,
                   allowed: torch.Tensor | None) -> tuple:
    """:class:`DistillTrainer`'s settings that a user's script may leave out, derived from the models,
    ``processing_class`` and the training set; sets a :class:`~augpro.collate.PaddingCollator` in
    ``trainer_kwargs`` when there is no ``data_collator``. Settings given (as the runner gives them
    all) are returned unchanged. Returns ``(mode, augmenter, regression, special_ids, allowed)``."""
    student = trainer_kwargs.get("model")
    if mode is None:
        mode = "kd" if teacher is not None else "ft"
    if regression is None:
        config = getattr(student, "config", None)
        regression = getattr(config, "problem_type", None) == "regression" or getattr(config, "num_labels", 2) == 1
    need_vocab = augmenter is not None and (special_ids is None or allowed is None or _unprepared_pool(augmenter))
    if not need_vocab and trainer_kwargs.get("data_collator") is not None:
        return mode, augmenter, regression, special_ids, allowed
    from augpro.vocab import find_tokenizer, resolve_vocabulary

    tokenizer = trainer_kwargs.get("processing_class")
    if not hasattr(tokenizer, "all_special_ids"):  # an image processor or none
        tokenizer = find_tokenizer(teacher, student)
    if need_vocab:
        rows, type_rows = _sample_rows(trainer_kwargs.get("train_dataset"))
        vocab = resolve_vocabulary(teacher, student, tokenizer=tokenizer, rows=rows, type_rows=type_rows)
        special_ids = vocab.special_ids if special_ids is None else special_ids
        allowed = vocab.allowed if allowed is None else allowed
        if _unprepared_pool(augmenter):
            from augpro.augment.plain import DirectAugmenter

            augmenter = DirectAugmenter(augmenter, vocab)
    if trainer_kwargs.get("data_collator") is None:
        from augpro.collate import PaddingCollator

        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            pad = getattr(getattr(student, "config", None), "pad_token_id", None)
        trainer_kwargs["data_collator"] = PaddingCollator(pad if isinstance(pad, int) else 0, regression)
    return mode, augmenter, regression, special_ids, allowed


def _unprepared_pool(augmenter: Augmenter | None) -> bool:
    """A pooled augmenter whose pool was never built (the runner builds it before training)."""
    from augpro.augment.pool import PooledAugmenter

    return isinstance(augmenter, PooledAugmenter) and not getattr(augmenter, "_pool", None)


def _sample_rows(dataset: Any, n: int = 256) -> tuple[list[list[int]] | None, list[list[int]] | None]:
    """Token rows (and token type rows) of the first ``n`` training examples, where the dataset can be
    indexed; they show a tokenizer's boundary tokens when no tokenizer is known."""
    rows: list[list[int]] = []
    types: list[list[int]] = []
    try:
        for i in range(min(n, len(dataset))):
            item = dataset[i]
            rows.append([int(x) for x in item["input_ids"]])
            if "token_type_ids" in item:
                types.append([int(x) for x in item["token_type_ids"]])
    except (TypeError, KeyError, IndexError, AttributeError):
        return (rows or None), None
    return (rows or None), (types if types and len(types) == len(rows) else None)


class DistillTrainer(Trainer):
    """``Trainer`` subclass for teacher fine-tuning, KD and FT with any augmenter.

    Works in a plain Hugging Face script: ``DistillTrainer(model=student, teacher=teacher,
    augmenter=augpro.AugProMix(degree=0.3), args=TrainingArguments(...), train_dataset=ds)``.
    Whatever is not given is derived (:func:`_user_defaults`): the mode (``kd`` with a teacher,
    else ``ft``), a padding collator, the special ids and allowed vocabulary (from
    ``processing_class``, else the tokenizer saved with the models), ``regression`` (from the
    student's config) and ``aug_seed`` (``args.seed``). A pooled augmenter (token replacement,
    synonym, EDA) that was not prepared augments each batch directly
    (:class:`~augpro.augment.plain.DirectAugmenter`).

    With ``hidden_weight``/``attention_weight`` (KD mode) the loss adds, on the batch and on every
    view, the intermediate-layer terms of :mod:`augpro.layers` (off by default)::

        + hidden_weight * MSE(W h_s^i, h_t^m(i)) + attention_weight * KL(A_t^m(i) || A_s^i)

    Args (besides ``Trainer``'s):
        mode: ``teacher``, ``kd`` or ``ft`` (default: ``kd`` with a teacher, else ``ft``).
        teacher: frozen teacher (KD mode).
        augmenter: an augmenter or ``None``.
        copies: augmented views per batch.
        temperature, kd_weight, ce_weight, aug_weight: loss settings.
        regression: the task is regression (default: the student's config says so).
        special_ids, allowed: token sets for augmenters (default: derived, see above).
        aug_seed: base seed of the per-step augmentation generators (default: ``args.seed``).
        retokenize: a :class:`~augpro.retokenize.Retokenizer` when teacher and student tokenize
            differently (batches then carry the teacher's own ``teacher_input_ids`` ...).
        trim_memory: return freed heap memory to the OS after every step (:func:`release_free_memory`).
        shared_forward: share forwards between the original batch and its views: views of token
            ids (AugPro-Mix, token replacement, synonym, EDA) go through one student forward with
            the original batch (:func:`stack_inputs`), where a view's row equal to its original
            (AugPro's plain projection leaves about half the rows unchanged) takes the original's
            student and teacher logits instead of running either again; gradient-based augmenters
            (AugPro-FGSM, FGSM) take ``d loss / d inputs_embeds`` from the original forward instead
            of running their own. Same losses and gradients as separate forwards (float tolerance)
            when the student has no dropout; with dropout the draws differ (an equally valid run,
            not the same one), which is why it is off by default.
        bf16_teacher: run the teacher's forwards in the trainer (live targets on original and
            augmented batches) under bf16 autocast. Off unless asked: the runner passes its
            config's resolved value (``TrainConfig.resolved_bf16_teacher``: under defaults version
            3, native bf16 on the training device).
        hidden_weight, attention_weight: weights of the hidden-state MSE and attention KL (default 0: off).
        layer_map: the teacher layer of each student layer (default: :func:`augpro.layers.default_layer_map`).
    """

    def __init__(self, *args: Any, mode: str | None = None, teacher: nn.Module | None = None,
                 augmenter: Augmenter | None = None, copies: int = 1, temperature: float = 1.0,
                 kd_weight: float = 1.0, ce_weight: float = 0.0, aug_weight: float = 1.0,
                 regression: bool | None = None, special_ids: torch.Tensor | None = None,
                 allowed: torch.Tensor | None = None, aug_seed: int | None = None, retokenize: Any = None,
                 trim_memory: bool = True, shared_forward: bool = False, bf16_teacher: bool = False,
                 hidden_weight: float = 0.0, attention_weight: float = 0.0, layer_map: list[int] | None = None,
                 **kwargs: Any):
        trainer_kwargs = inspect.signature(Trainer.__init__).bind(self, *args, **kwargs).arguments
        trainer_kwargs.pop("self")
        mode, augmenter, regression, special_ids, allowed = _user_defaults(
            trainer_kwargs, mode, teacher, augmenter, regression, special_ids, allowed)
        super().__init__(**trainer_kwargs)
        if aug_seed is None:
            aug_seed = self.args.seed
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
        self.shared_forward = shared_forward
        self.bf16_teacher = bf16_teacher
        self._window: dict[str, list[float]] = defaultdict(list)
        self.totals: dict[str, float] = defaultdict(float)
        self.hidden_weight = hidden_weight
        self.attention_weight = attention_weight
        self.layers = self._layer_distiller(layer_map) if hidden_weight > 0 or attention_weight > 0 else None

    # ---------------------------------------------------------------- intermediate layers
    def _layer_distiller(self, layer_map: list[int] | None):
        """The :class:`~augpro.layers.LayerDistiller` for ``hidden_weight``/``attention_weight``."""
        from augpro.errors import UserError
        from augpro.layers import LayerDistiller

        if self.teacher is None or self.mode != "kd":
            raise UserError("--hidden-weight/--attention-weight distil the teacher's layers: they need KD mode "
                            "(augpro distill) with a teacher")
        if self.retokenize is not None:
            raise UserError("--hidden-weight/--attention-weight need the teacher and the student to share a "
                            "tokenizer (their layers are compared position by position); these two differ")
        if self.shared_forward:
            raise UserError("--hidden-weight/--attention-weight do not combine with --shared-forward")
        return LayerDistiller(self.accelerator.unwrap_model(self.model), self.teacher, self.hidden_weight,
                              self.attention_weight, layer_map)

    def _layer_loss(self, teacher_inputs: dict[str, torch.Tensor], attention_mask: torch.Tensor) -> torch.Tensor:
        """The intermediate-layer loss between the student's last forward and the teacher on
        ``teacher_inputs`` (run only when its last forward was on other inputs)."""
        self.layers.teacher_features(teacher_inputs, self._teacher_forward)
        value, parts = self.layers.loss(attention_mask)
        for key, v in parts.items():
            self._record(key, v)
        return value

    def _layer_teacher_inputs(self, aug: AugmentedBatch, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """What the teacher reads for a view's layer targets: its inputs on the view, else the view's
        tokens (pooled views with cached logits), else the original batch (FGSM's target)."""
        if aug.teacher_inputs is not None:
            return aug.teacher_inputs
        if "input_ids" in aug.student_inputs:
            return aug.student_inputs
        return model_inputs(inputs)

    def train(self, *args: Any, **kwargs: Any):
        if self.layers is None:
            return super().train(*args, **kwargs)
        self.layers.start()  # feature hooks, and the projection before the optimizer is made
        try:
            return super().train(*args, **kwargs)
        finally:
            self.layers.stop()  # the saved student is a plain checkpoint

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

    def _teacher_forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The frozen teacher's logits on model inputs (float32), under bf16 autocast with ``bf16_teacher``."""
        autocast = (torch.autocast(self.args.device.type, dtype=torch.bfloat16) if self.bf16_teacher
                    else contextlib.nullcontext())
        with torch.no_grad(), autocast:
            return self.teacher(**inputs).logits.float()

    def _teacher_logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "teacher_logits" in batch:
            return batch["teacher_logits"].float()
        return self._teacher_forward(teacher_view(batch) or model_inputs(batch))

    def _augment_context(self, model: nn.Module, inputs: dict[str, Any], t: torch.Tensor | None,
                         input_gradient: torch.Tensor | None = None) -> AugmentContext:
        return AugmentContext(
            student=self.accelerator.unwrap_model(model),
            teacher=self.teacher,
            mode="kd" if self.mode == "kd" else "ft",
            temperature=self.temperature,
            regression=self.regression,
            teacher_logits=(lambda _b, _t=t: _t),
            special_ids=self.special_ids.to(inputs["input_ids"].device),
            allowed=self.allowed,
            teacher_batch=teacher_view(inputs),
            retokenize=self.retokenize,
            input_gradient=input_gradient,
        )

    def _step_path(self, model: nn.Module) -> str:
        """How this step runs the student: ``separate`` forwards (the default), ``joint`` (one
        forward over the original batch and its views) or ``input-gradient`` (the augmenter's
        gradient taken from the original forward); see ``shared_forward``."""
        if not (self.shared_forward and self.augmenter is not None and model.training and self.aug_weight):
            return "separate"
        if getattr(self.augmenter, "gradient_from_forward", False):
            return "input-gradient" if self.retokenize is None else "separate"
        return "joint"

    def compute_loss(self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None):
        labels = inputs["labels"]
        path = self._step_path(model)
        views: list[tuple[AugmentedBatch, torch.Tensor]] | None = None
        embeds = t = None
        if path == "joint":
            # every view first (they do not depend on the student's outputs), then one forward
            t = self._teacher_logits(inputs) if self.mode == "kd" else None
            ctx = self._augment_context(model, inputs, t)
            augs = [self.augmenter.augment(inputs, ctx, self._generator(c), c) for c in range(self.copies)]
            outputs, views = self._joint_forward(model, inputs, augs)
        elif path == "input-gradient":
            # the same forward as from input_ids (the table gets its gradient through embeds)
            embeds = self.accelerator.unwrap_model(model).get_input_embeddings()(inputs["input_ids"])
            outputs = model(inputs_embeds=embeds, **{k: v for k, v in model_inputs(inputs).items() if k != "input_ids"})
        else:
            outputs = model(**model_inputs(inputs))
        s = outputs.logits
        if self.mode == "kd":
            if t is None:
                t = self._teacher_logits(inputs)
            objective = kd_loss(t, s, self.temperature, self.regression)
            loss = self.kd_weight * objective
            if self.ce_weight:
                loss = loss + self.ce_weight * label_loss(s, labels, self.regression)
        else:
            loss = objective = label_loss(s, labels, self.regression)
        self._record("loss_orig", float(loss.detach()))
        if self.layers is not None and model.training:
            loss = loss + self._layer_loss(model_inputs(inputs), inputs["attention_mask"])

        if self.augmenter is not None and model.training and self.aug_weight:
            grad = None
            if path == "input-gradient":
                # what fgsm_step's own forward would give: d objective / d inputs_embeds
                (grad,) = torch.autograd.grad(objective, embeds, retain_graph=True)
            ctx = self._augment_context(model, inputs, t, grad)
            for copy in range(self.copies):
                if views is not None:
                    aug, s_aug = views[copy]
                else:
                    aug = self.augmenter.augment(inputs, ctx, self._generator(copy), copy)
                    s_aug = model(**aug.student_inputs).logits
                aug_loss = self._view_loss(aug, s_aug, t, labels, inputs)
                loss = loss + self.aug_weight * aug_loss / self.copies
                if self.layers is not None:  # right after the view's forwards: the taps hold their features
                    layer_loss = self._layer_loss(self._layer_teacher_inputs(aug, inputs),
                                                  aug.student_inputs["attention_mask"])
                    loss = loss + self.aug_weight * layer_loss / self.copies
                self._record_view(aug, aug_loss)
        return (loss, outputs) if return_outputs else loss

    def _joint_forward(self, model: nn.Module, inputs: dict[str, Any], augs: list[AugmentedBatch]):
        """The student's outputs on the original batch and its views' logits, from one forward over
        the batch and the views' rows that differ from it (a view's row equal to its original, as
        AugPro's projection often leaves one, takes the original's logits: the same function of the
        same input), when they stack (token ids); else from one forward each."""
        orig = model_inputs(inputs)
        changed = [~same_rows(aug.student_inputs, orig) for aug in augs]
        parts = [orig] + [take_rows(aug.student_inputs, c) if not c.all() else aug.student_inputs
                          for aug, c in zip(augs, changed)]
        kept = [p for p in parts if "input_ids" not in p or p["input_ids"].shape[0]]  # views with changed rows
        pad = getattr(self.accelerator.unwrap_model(model).config, "pad_token_id", None)
        stacked = stack_inputs(kept, pad if isinstance(pad, int) else 0)
        if stacked is None:  # e.g. views of embeddings: the usual forwards
            outputs = model(**orig)
            return outputs, [(aug, model(**aug.student_inputs).logits) for aug in augs]
        split = iter(split_outputs(model(**stacked), [p["input_ids"].shape[0] for p in kept],
                                   [p["input_ids"].shape[1] for p in kept]))
        outputs = next(split)
        views = []
        for aug, rows in zip(augs, changed):
            if rows.all():
                s_aug = next(split).logits
            elif rows.any():
                s_aug = outputs.logits.clone()
                s_aug[rows] = next(split).logits
            else:
                s_aug = outputs.logits
            views.append((aug, s_aug))
        return outputs, views

    def _teacher_on_changed_rows(self, view: dict[str, torch.Tensor], original: dict[str, torch.Tensor],
                                 t: torch.Tensor) -> torch.Tensor:
        """The teacher's logits on a view, run only on the rows that differ from the original batch
        (the others take ``t``, its logits on the original)."""
        changed = ~same_rows(view, original)
        if changed.all():
            return self._teacher_forward(view)
        t_aug = t.clone()
        if changed.any():
            t_aug[changed] = self._teacher_forward(take_rows(view, changed))
        return t_aug

    def _view_loss(self, aug: AugmentedBatch, s_aug: torch.Tensor, t: torch.Tensor | None,
                   labels: torch.Tensor, inputs: dict[str, Any] | None = None) -> torch.Tensor:
        """The loss of one augmented view (KD to the teacher's target on it, or the label loss)."""
        if self.mode == "kd":
            if aug.teacher_logits is not None:
                t_aug = aug.teacher_logits.float()
            elif self.shared_forward and inputs is not None:
                t_aug = self._teacher_on_changed_rows(aug.teacher_inputs, teacher_view(inputs) or model_inputs(inputs), t)
            else:
                t_aug = self._teacher_forward(aug.teacher_inputs)
            aug_loss = kd_loss(t_aug, s_aug, self.temperature, self.regression)
            if not self.regression:
                self._record("label_flip_rate", float((t_aug.argmax(-1) != t.argmax(-1)).float().mean()))
            return aug_loss
        target = aug.soft_labels if aug.soft_labels is not None else labels
        return label_loss(s_aug, target, self.regression)

    def _record_view(self, aug: AugmentedBatch, aug_loss: torch.Tensor) -> None:
        self._record("loss_aug", float(aug_loss.detach()))
        if aug.changed is not None:
            self._record("aug_degree", float(aug.degree.mean()))
            self.totals["changed"] += float(aug.changed.sum())
            self.totals["eligible"] += float(aug.eligible.sum())
            self.totals["examples"] += float(aug.changed.numel())
            self.totals["degree_sum"] += float(aug.degree.sum())
        for k, v in aug.extra.items():
            self._record(f"aug_{k}", v)

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
