"""Distillation and fine-tuning losses (DESIGN §2).

``KD(t, s) = tau^2 * KL(softmax(t / tau) || softmax(s / tau))`` for classification and
``MSE(s, t)`` for regression; ``CE(s, y)`` (or MSE to the gold score) for fine-tuning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(teacher_logits: torch.Tensor, student_logits: torch.Tensor, temperature: float = 1.0,
            regression: bool = False) -> torch.Tensor:
    """Batch-mean KD loss of the student against the teacher's logits."""
    if regression:
        return F.mse_loss(student_logits.float().view(-1), teacher_logits.float().view(-1))
    t = teacher_logits.float() / temperature
    s = student_logits.float() / temperature
    kl = F.kl_div(F.log_softmax(s, dim=-1), F.log_softmax(t, dim=-1), reduction="batchmean", log_target=True)
    return kl * temperature**2


def label_loss(student_logits: torch.Tensor, labels: torch.Tensor, regression: bool = False) -> torch.Tensor:
    """Cross-entropy to gold labels (hard ``[B]`` or soft ``[B, C]``), or MSE to gold scores."""
    if regression:
        return F.mse_loss(student_logits.float().view(-1), labels.float().view(-1))
    if labels.dim() == 2:
        return -(labels.float() * F.log_softmax(student_logits.float(), dim=-1)).sum(-1).mean()
    return F.cross_entropy(student_logits.float(), labels)
