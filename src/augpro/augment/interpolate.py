"""Embedding-space augmentation without projection: MixKD (mixup) and FGSM.

Both produce *virtual* inputs (``inputs_embeds``) no tokenizer can emit. The pieces they share
with AugPro live here: the mixing plan (partner, per-segment alignment, ``lam``) and the FGSM
step on the student's word embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from augpro.augment.base import AugmentContext, AugmentedBatch, Augmenter, Batch, eligible_mask, numpy_rng
from augpro.losses import kd_loss, label_loss
from augpro.augment.project import column_std

GRANULARITIES = ("sequence", "token")


@dataclass
class MixPlan:
    """How a batch is mixed: partner rows, aligned partner positions and weights.

    Attributes:
        perm: partner row of each example ``[B]``.
        partner_pos: position in the partner row aligned with each position ``[B, L]``
            (``-1``: no partner token there; the position keeps its own token).
        lam: weight of the example's own embedding ``[B, L]``.
        eligible: positions that may change ``[B, L]``.
    """

    perm: torch.Tensor
    partner_pos: torch.Tensor
    lam: torch.Tensor
    eligible: torch.Tensor

    @property
    def mixed(self) -> torch.Tensor:
        return self.partner_pos >= 0

    def partner_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Partner token at each position (own token where there is none)."""
        rows = input_ids[self.perm]
        gathered = rows.gather(1, self.partner_pos.clamp(min=0))
        return torch.where(self.mixed, gathered, input_ids)

    def mix(self, emb: torch.Tensor) -> torch.Tensor:
        """``lam * emb + (1 - lam) * emb_partner`` at aligned positions, ``emb`` elsewhere."""
        rows = emb[self.perm]
        idx = self.partner_pos.clamp(min=0).unsqueeze(-1).expand(-1, -1, emb.shape[-1])
        partner = rows.gather(1, idx)
        lam = self.lam.unsqueeze(-1).to(emb.dtype)
        mixed = lam * emb + (1 - lam) * partner
        return torch.where(self.mixed.unsqueeze(-1), mixed, emb)

    def sequence_lam(self) -> torch.Tensor:
        """Per-example mean weight over mixed positions (1 where nothing was mixed)."""
        m = self.mixed.float()
        return torch.where(m.sum(1) > 0, (self.lam * m).sum(1) / m.sum(1).clamp(min=1), torch.ones_like(m[:, 0]))


def segment_alignment(eligible: torch.Tensor, segments: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """Align each eligible position with the same-rank eligible position of the same segment
    in the partner row (first segment with first, second with second). ``-1`` where the
    partner's segment is shorter or the position is not eligible."""
    B, L = eligible.shape
    n_seg = int(segments.max().item()) + 1 if segments.numel() else 1
    rank = torch.full((B, L), -1, dtype=torch.long, device=eligible.device)
    for s in range(n_seg):
        m = eligible & (segments == s)
        r = m.long().cumsum(1) - 1
        rank = torch.where(m, r, rank)
    pos_of = torch.full((B, n_seg, L), -1, dtype=torch.long, device=eligible.device)
    b_idx, l_idx = eligible.nonzero(as_tuple=True)
    pos_of[b_idx, segments[b_idx, l_idx], rank[b_idx, l_idx]] = l_idx
    partner_table = pos_of[perm]  # [B, S, L]
    rows = torch.arange(B, device=eligible.device)[:, None].expand(B, L)
    out = partner_table[rows, segments.clamp(min=0, max=n_seg - 1), rank.clamp(min=0)]
    return torch.where(eligible, out, torch.full_like(out, -1))


def draw_mix_plan(batch: Batch, special_ids: torch.Tensor, generator: torch.Generator,
                  alpha: float = 0.4, granularity: str = "sequence") -> MixPlan:
    """A random partner permutation and Beta(alpha, alpha) weights for a batch."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    ids = batch["input_ids"]
    B, L = ids.shape
    eligible = eligible_mask(ids, batch["attention_mask"], special_ids)
    perm = torch.randperm(B, generator=generator).to(ids.device)
    segments = batch.get("token_type_ids")
    if segments is None:
        segments = torch.zeros_like(ids)
    partner_pos = segment_alignment(eligible, segments, perm)
    rng = numpy_rng(generator)
    shape = (B, 1) if granularity == "sequence" else (B, L)
    lam = torch.as_tensor(rng.beta(alpha, alpha, size=shape), dtype=torch.float32, device=ids.device).expand(B, L)
    return MixPlan(perm, partner_pos, lam.contiguous(), eligible)


def word_embeddings(model: torch.nn.Module) -> torch.Tensor:
    """A model's input word-embedding table ``[V, d]``."""
    return model.get_input_embeddings().weight


def forward_inputs(batch: Batch) -> Batch:
    """The keys of a batch a sequence classifier takes besides ids/embeddings."""
    return {k: batch[k] for k in ("attention_mask", "token_type_ids") if k in batch}


def one_hot(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels.long(), num_classes).float()


class MixKD(Augmenter):
    """MixKD: mixup of word embeddings fed as virtual ``inputs_embeds`` to teacher and student.

    Each model gets the mix in its own table. In FT mode the target is the mixed label
    ``lam * y + (1 - lam) * y_partner``.

    Args:
        alpha: Beta(alpha, alpha) for ``lam``.
        granularity: one ``lam`` per ``sequence`` or per ``token``.
    """

    name = "mixkd"
    needs_models = True

    def __init__(self, alpha: float = 0.4, granularity: str = "sequence"):
        self.alpha = alpha
        self.granularity = granularity

    def augment(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                copy: int = 0) -> AugmentedBatch:
        plan = draw_mix_plan(batch, ctx.special_ids, generator, self.alpha, self.granularity)
        ids = batch["input_ids"]
        rest = forward_inputs(batch)
        with torch.no_grad():
            s_emb = plan.mix(word_embeddings(ctx.student)[ids]).detach()
            t_inputs = None
            if ctx.teacher is not None:
                t_inputs = {"inputs_embeds": plan.mix(word_embeddings(ctx.teacher)[ids]), **rest}
        soft = None
        if ctx.mode == "ft":
            lam = plan.sequence_lam()
            y = batch["labels"]
            if ctx.regression:
                soft = lam * y.float() + (1 - lam) * y.float()[plan.perm]
            else:
                c = ctx.student.config.num_labels
                soft = lam[:, None] * one_hot(y, c) + (1 - lam[:, None]) * one_hot(y[plan.perm], c)
        moved = plan.mixed & (plan.partner_ids(ids) != ids)
        return AugmentedBatch(
            student_inputs={"inputs_embeds": s_emb, **rest},
            teacher_inputs=t_inputs,
            soft_labels=soft,
            changed=moved.sum(1),
            eligible=plan.eligible.sum(1),
            extra={"lam": float(plan.sequence_lam().mean())},
        )


def fgsm_step(batch: Batch, ctx: AugmentContext, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One FGSM step on the student's word embeddings of the batch.

    ``g = d/de loss(S(inputs_embeds=e))`` with the KD loss to the teacher's logits on the
    original input (CE to the gold label in FT mode); ``e_adv = e + eps * std * sign(g)`` on
    eligible positions, ``std`` the table's per-dimension standard deviation. ``g`` is
    ``ctx.input_gradient`` when the trainer took it from its forward on the original batch (the
    same gradient without a second forward), else it comes from a forward run here.

    Returns ``e_adv [B, L, d]``, the gradient norm per position ``[B, L]`` and the eligible mask.
    """
    ids = batch["input_ids"]
    table = word_embeddings(ctx.student)
    eligible = eligible_mask(ids, batch["attention_mask"], ctx.special_ids)
    e = table.detach()[ids].clone().requires_grad_(True)
    if ctx.input_gradient is not None:
        grad = ctx.input_gradient.detach()
    else:
        target = ctx.teacher_logits(batch) if ctx.mode == "kd" else None
        with torch.enable_grad():
            logits = ctx.student(inputs_embeds=e, **forward_inputs(batch)).logits
            if target is not None:
                loss = kd_loss(target.detach(), logits, ctx.temperature, ctx.regression)
            else:
                loss = label_loss(logits, batch["labels"], ctx.regression)
            (grad,) = torch.autograd.grad(loss, e)
    std = column_std(table.detach())
    step = eps * std * grad.sign()
    e_adv = (e.detach() + step * eligible.unsqueeze(-1)).detach()
    return e_adv, grad.norm(dim=-1), eligible


class FGSM(Augmenter):
    """FGSM without projection: the perturbed embedding goes to the student as virtual input;
    the teacher's target is its output on the original input.

    Args:
        eps: step size in units of the student table's per-dimension standard deviation.
    """

    name = "fgsm"
    needs_models = True
    gradient_from_forward = True

    def __init__(self, eps: float = 1.0):
        self.eps = eps

    def augment(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                copy: int = 0) -> AugmentedBatch:
        e_adv, _, eligible = fgsm_step(batch, ctx, self.eps)
        target = ctx.teacher_logits(batch) if ctx.mode == "kd" else None
        return AugmentedBatch(
            student_inputs={"inputs_embeds": e_adv, **forward_inputs(batch)},
            teacher_logits=target,
            changed=eligible.sum(1) if self.eps > 0 else torch.zeros_like(eligible.sum(1)),
            eligible=eligible.sum(1),
        )
