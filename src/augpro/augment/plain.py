"""Augmenters on a plain batch, outside any trainer: the convenience form of ``augment``.

::

    aug = augpro.AugProMix(degree=0.3)
    out = aug.augment(batch, teacher=teacher, student=student, generator=torch.Generator().manual_seed(0))
    student(**out)          # out["input_ids"]: real tokens, same shape as batch["input_ids"]
    out.changed, out.eligible, out.degree   # per row

This builds what the trainer supplies (an :class:`~augpro.augment.base.AugmentContext`: special
ids, allowed vocabulary, the teacher's logits on the batch) from the models and an optional
tokenizer (:func:`augpro.vocab.resolve_vocabulary`), runs the trainer's form of ``augment`` (or
:meth:`~augpro.augment.base.Augmenter.augment_directly` for pooled methods, which augment the given
batch instead of an offline pool) and returns the view as a batch.

:class:`DirectAugmenter` does the same inside :class:`~augpro.distill.DistillTrainer` for a pooled
augmenter whose pool was never built (a user's own script): each batch is augmented directly.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from augpro.augment.base import AugmentContext, AugmentedBatch, Augmenter, Batch, PrepareContext
from augpro.vocab import Vocabulary, batch_rows, resolve_vocabulary

MODEL_KEYS = ("input_ids", "attention_mask", "token_type_ids")
#: methods whose view is a gradient step: they need a target (the teacher's logits, or gold labels)
_GRADIENT_METHODS = ("fgsm", "augpro-fgsm")


class AugmentResult(dict):
    """An augmented batch: the input batch's keys with the student's new inputs, plus statistics.

    ``input_ids`` holds real token ids for token-producing methods (same shape as the input);
    virtual methods (MixKD, FGSM) give ``inputs_embeds`` ``[B, L, d]`` in place of ``input_ids``.
    Other keys (``attention_mask``, ``token_type_ids``, ``labels``, ...) are the input's.

    Attributes:
        changed: changed positions per row ``[B]`` (words for synonym/EDA).
        eligible: positions that could change per row ``[B]`` (real, non-special tokens).
        teacher_inputs: what the teacher should read for this view when it differs from the
            student's inputs (MixKD: the mix in the teacher's own table), else ``None``.
        teacher_logits: the teacher's target when the method fixes it (FGSM: the teacher on the
            original batch), else ``None``.
        soft_labels: mixed gold labels (MixKD on a batch with ``labels`` and no teacher), else ``None``.
        extra: method statistics (e.g. AugPro-Mix's mean ``lam``).
    """

    changed: torch.Tensor | None = None
    eligible: torch.Tensor | None = None
    teacher_inputs: Batch | None = None
    teacher_logits: torch.Tensor | None = None
    soft_labels: torch.Tensor | None = None
    extra: dict[str, float] | None = None

    @property
    def degree(self) -> torch.Tensor:
        """Realised share of changed positions per row (0 where nothing was eligible)."""
        if self.changed is None or self.eligible is None:
            return torch.zeros(0)
        return self.changed.float() / self.eligible.clamp(min=1).float()


def as_batch(batch: Mapping[str, Any], device: torch.device | None = None) -> Batch:
    """A tokenizer-style batch (dict or ``BatchEncoding``; tensors or rectangular lists) as a dict
    of tensors on ``device``, with an all-ones ``attention_mask`` when it has none."""
    if "input_ids" not in batch:
        raise ValueError("the batch needs input_ids (a tokenizer's output with return_tensors='pt')")
    out: Batch = {}
    for key, value in dict(batch).items():
        if not isinstance(value, torch.Tensor):
            try:
                value = torch.as_tensor(value)
            except (ValueError, TypeError):
                if key in MODEL_KEYS:
                    raise ValueError(f"batch[{key!r}] is not a rectangular array: pad the batch (tokenizer(..., "
                                     "padding=True, return_tensors='pt'))") from None
                out[key] = value  # e.g. raw text kept alongside
                continue
        out[key] = value.to(device) if device is not None else value
    ids = out["input_ids"]
    if ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must be a [batch, length] integer tensor, got {tuple(ids.shape)} {ids.dtype}")
    out["input_ids"] = ids.long()
    for key in ("attention_mask", "token_type_ids"):
        if key in out:
            if out[key].shape != ids.shape:
                raise ValueError(f"{key} has shape {tuple(out[key].shape)}, input_ids {tuple(ids.shape)}")
            out[key] = out[key].long()
    if "attention_mask" not in out:
        out["attention_mask"] = torch.ones_like(out["input_ids"])
    if "labels" not in out and "label" in out:
        out["labels"] = out["label"]
    return out


def _device(*models: nn.Module | None) -> torch.device | None:
    for m in models:
        if m is not None:
            return next(m.parameters()).device
    return None


def _model_inputs(batch: Batch) -> Batch:
    return {k: batch[k] for k in MODEL_KEYS if k in batch}


def plain_context(augmenter: Augmenter, batch: Batch, vocab: Vocabulary, teacher: nn.Module | None,
                  student: nn.Module | None) -> AugmentContext:
    """What the trainer would give ``augmenter`` for this batch, built from the models.

    Mode ``kd`` with a teacher (targets: the teacher's logits), else ``ft`` (gold ``labels``).
    With one model it plays both roles where a method reads both (its table, its gradients).
    """
    if augmenter.needs_models and teacher is None and student is None:
        raise ValueError(f"{augmenter.name} works on the models' embeddings: pass teacher= and/or student=")
    has_labels = "labels" in batch
    if augmenter.name in _GRADIENT_METHODS and teacher is None and not has_labels:
        raise ValueError(f"{augmenter.name} takes a gradient step: pass teacher= (the KD target) or a batch "
                         "with labels (the fine-tuning target)")
    # FT targets need gold labels; without them a method just skips its label mixing
    mode = "kd" if teacher is not None or not has_labels else "ft"
    reader = student if student is not None else teacher
    regression = reader is not None and (getattr(reader.config, "problem_type", None) == "regression"
                                         or getattr(reader.config, "num_labels", 2) == 1)

    @torch.no_grad()
    def teacher_logits(b: Batch) -> torch.Tensor | None:
        if teacher is None:
            return None
        return teacher(**_model_inputs(b)).logits.float()

    return AugmentContext(student=reader, teacher=teacher, mode=mode, temperature=1.0, regression=regression,
                          teacher_logits=teacher_logits, special_ids=vocab.special_ids.to(batch["input_ids"].device),
                          allowed=vocab.allowed)


def result_of(batch: Batch, view: AugmentedBatch, keys: set[str]) -> AugmentResult:
    """The view as a batch with the caller's keys (``keys``: those the input batch had)."""
    out = AugmentResult({k: v for k, v in batch.items() if k in keys})
    if "inputs_embeds" in view.student_inputs:
        out.pop("input_ids", None)
    reshaped = view.student_inputs.get("input_ids", batch["input_ids"]).shape != batch["input_ids"].shape
    out.update({k: v for k, v in view.student_inputs.items()
                if k in keys or k in ("input_ids", "inputs_embeds") or reshaped})  # re-tokenized text: all keys
    out.changed, out.eligible = view.changed, view.eligible
    same = view.teacher_inputs is None or all(view.teacher_inputs.get(k) is view.student_inputs.get(k)
                                              for k in view.teacher_inputs)
    out.teacher_inputs = None if same else view.teacher_inputs
    out.teacher_logits, out.soft_labels, out.extra = view.teacher_logits, view.soft_labels, dict(view.extra)
    return out


def augment_batch(augmenter: Augmenter, batch: Mapping[str, Any], *, teacher: nn.Module | None = None,
                  student: nn.Module | None = None, tokenizer: Any = None,
                  generator: torch.Generator | None = None) -> AugmentResult:
    """The convenience form of :meth:`Augmenter.augment` (see the module docstring).

    Args:
        augmenter: any augmenter.
        batch: ``input_ids`` ``[B, L]``, ``attention_mask``, optional ``token_type_ids`` and
            ``labels``; moved to the models' device.
        teacher: the (frozen, eval-mode) teacher; its table is the projection table of
            AugPro-Mix and its logits the target of gradient methods.
        student: the student (AugPro-FGSM's gradients, MixKD's student embeddings).
        tokenizer: the models' tokenizer (exact special tokens and vocabulary; needed by the
            word-level methods, which edit decoded text).
        generator: random draws; default: a generator seeded from torch's global RNG.
    """
    if generator is None:
        generator = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,))))
    keys = set(batch.keys())
    b = as_batch(batch, _device(teacher, student))
    rows, type_rows = batch_rows(b)
    vocab = resolve_vocabulary(teacher, student, tokenizer=tokenizer, rows=rows, type_rows=type_rows)
    ctx = plain_context(augmenter, b, vocab, teacher, student)
    view = augmenter.augment_directly(b, ctx, generator, vocab)
    return result_of(b, view, keys)


class DirectAugmenter(Augmenter):
    """A pooled augmenter that augments each training batch directly instead of reading a pool.

    :class:`~augpro.distill.DistillTrainer` uses it for a pooled augmenter (token replacement,
    synonym, EDA) whose :meth:`~augpro.augment.base.Augmenter.prepare` was never called: the
    teacher then labels each augmented batch live, and every step draws new replacements (the
    CLI builds a fixed pool of ``copies`` views instead).

    Args:
        augmenter: the pooled augmenter.
        vocab: the vocabulary it replaces tokens in (mask id, tokenizer for word-level methods).
    """

    needs_models = False

    def __init__(self, augmenter: Augmenter, vocab: Vocabulary):
        self.augmenter = augmenter
        self.vocab = vocab

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.augmenter.name

    def augment(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                copy: int = 0) -> AugmentedBatch:
        return self.augmenter.augment_directly(batch, ctx, generator, self.vocab)

    def prepare(self, ctx: PrepareContext) -> None:
        self.augmenter.prepare(ctx)

    def describe(self) -> dict[str, Any]:
        return {**self.augmenter.describe(), "pool": "none (each batch augmented directly)"}
