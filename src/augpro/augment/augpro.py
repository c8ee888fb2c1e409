"""AugPro: augmentation with projection (Wang et al., ICLR 2023).

Mix (AugPro-Mix) or perturb (AugPro-FGSM) word embeddings, then project every eligible position
to its nearest vocabulary token, so teacher and student see the same *real* token sequence.

Degree control (beyond the paper): with ``degree=p`` exactly ``round(p * n_eligible)`` positions
of each example change: those the mix/perturbation moved most (mix: ``||e_i - E[x_i]||``;
FGSM: the gradient norm at the position), each to its nearest token *other than* the original.
The rest keep their token. Without ``degree`` the plain projection is used and the realised
share of changed tokens is reported.
"""

from __future__ import annotations

import torch

from augpro.augment.base import AugmentContext, AugmentedBatch, Augmenter, Batch, pick_exact
from augpro.augment.interpolate import GRANULARITIES, MixPlan, draw_mix_plan, fgsm_step, forward_inputs, word_embeddings
from augpro.augment.project import Projector, column_std

PROJECTION_TABLES = ("teacher", "student")


class _ProjectingAugmenter(Augmenter):
    """Shared projection machinery: projectors per table, degree selection, output batch."""

    needs_models = True

    def __init__(self) -> None:  # pragma: no cover - abstract helper
        raise TypeError("use AugProMix or AugProFGSM")

    def _projector(self, model: torch.nn.Module, ctx: AugmentContext, frozen: bool) -> Projector:
        cache = self.__dict__.setdefault("_projectors", {})
        table = word_embeddings(model)
        proj = cache.get(id(model))
        if proj is None or proj.table is not table:
            proj = Projector(table, ctx.allowed, chunk_size=self.chunk_size)
            cache[id(model)] = proj
        elif not frozen:
            proj.refresh()  # the student's table changes every step
        return proj

    def _table_model(self, ctx: AugmentContext) -> tuple[torch.nn.Module, bool]:
        if self.projection_table == "teacher" and ctx.teacher is not None:
            return ctx.teacher, True
        return ctx.student, False

    def _finish(self, batch: Batch, new_ids: torch.Tensor, eligible: torch.Tensor,
                extra: dict[str, float] | None = None, ctx: AugmentContext | None = None) -> AugmentedBatch:
        ids = batch["input_ids"]
        inputs = {"input_ids": new_ids, **forward_inputs(batch)}
        student_inputs = inputs
        if ctx is not None and ctx.retokenize is not None:
            # teacher tokens -> text -> the student's tokens (different tokenizers)
            student_inputs = ctx.retokenize.batch(inputs)
        return AugmentedBatch(
            student_inputs=student_inputs,
            teacher_inputs=inputs,
            changed=(new_ids != ids).sum(1),
            eligible=eligible.sum(1),
            extra=extra or {},
        )

    def _select(self, priority: torch.Tensor, eligible: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The ``round(degree * n_eligible)`` positions of each row with the highest priority."""
        # Random jitter far below any real difference breaks ties reproducibly.
        jitter = torch.rand(priority.shape, generator=generator).to(priority.device) * 1e-6
        selected, _ = pick_exact(priority.float() + jitter, eligible, self.degree)
        return selected

    def _project(self, emb: torch.Tensor, ids: torch.Tensor, candidates: torch.Tensor,
                 eligible: torch.Tensor, priority: torch.Tensor, proj: Projector,
                 generator: torch.Generator) -> torch.Tensor:
        """Plain projection at ``candidates``, or exact-degree projection when ``degree`` is set."""
        new_ids = ids.clone()
        if self.degree is None:
            if candidates.any():
                new_ids[candidates] = proj.project_positions(emb, candidates)
            return new_ids
        selected = self._select(priority, eligible, generator)
        if selected.any():
            new_ids[selected] = proj.project_positions(emb, selected, exclude=ids)
        return new_ids


class AugProMix(_ProjectingAugmenter):
    """AugPro-Mix: mix word embeddings with a partner from the batch, then project.

    Args:
        alpha: Beta(alpha, alpha) for ``lam`` (the example's own weight).
        granularity: one ``lam`` per ``sequence`` (the paper's notation) or per ``token``.
        degree: exact share of eligible tokens to change, or ``None`` (report the realised share).
        projection_table: ``teacher`` (default) or ``student`` word-embedding table.
        chunk_size: positions per projection GEMM.
    """

    name = "augpro-mix"

    def __init__(self, alpha: float = 0.4, granularity: str = "sequence", degree: float | None = None,
                 projection_table: str = "teacher", chunk_size: int = 256):
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}")
        if projection_table not in PROJECTION_TABLES:
            raise ValueError(f"projection_table must be one of {PROJECTION_TABLES}")
        self.alpha = alpha
        self.granularity = granularity
        self.degree = degree
        self.projection_table = projection_table
        self.chunk_size = chunk_size

    @torch.no_grad()
    def augment(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                copy: int = 0) -> AugmentedBatch:
        if ctx.teacher_batch is not None:
            # different tokenizers: mix and project the teacher's tokens in the teacher's table;
            # _finish re-tokenizes the result for the student
            if self.projection_table != "teacher" or ctx.teacher is None:
                raise ValueError("with different teacher and student tokenizers AugPro-Mix projects in the "
                                 "teacher's table (projection_table='teacher', KD mode)")
            batch = ctx.teacher_batch
        ids = batch["input_ids"]
        plan = draw_mix_plan(batch, ctx.special_ids, generator, self.alpha, self.granularity)
        model, frozen = self._table_model(ctx)
        proj = self._projector(model, ctx, frozen)
        table = word_embeddings(model).detach()
        extra = {"lam": float(plan.sequence_lam().mean())}
        if frozen:
            # A frozen table (the teacher's) allows the certified pruned search: the nearest
            # token to a mix of two tokens from their precomputed neighbour lists, exact, with
            # no [n, V] GEMM (Projector.project_mix; the neighbour table is built once, cached).
            new_ids = ids.clone()
            partner = plan.partner_ids(ids)
            if self.degree is None:
                sel = plan.mixed
                if sel.any():
                    new_ids[sel] = proj.project_mix(ids[sel], partner[sel], plan.lam[sel])
            else:
                priority = (table[partner] - table[ids]).float().norm(dim=-1) * plan.mixed
                sel = self._select(priority, plan.eligible, generator)
                # the partner-dominated side of the mix (see below); lam = 1 where unmixed
                lam = torch.where(plan.mixed, torch.minimum(plan.lam, 1 - plan.lam), torch.ones_like(plan.lam))
                if sel.any():
                    new_ids[sel] = proj.project_mix(ids[sel], partner[sel], lam[sel], exclude=ids[sel])
            return self._finish(batch, new_ids, plan.eligible, extra, ctx)
        own = table[ids]
        mixed = plan.mix(own)
        priority = (mixed - own).float().norm(dim=-1)
        if self.degree is not None:
            # Positions forced to change take the partner-dominated side of the mix
            # (weight max(lam, 1 - lam) on the partner): the projection of a mix is the token
            # of whichever side weighs more, so this yields partner tokens, not arbitrary
            # near-own tokens. The ranking uses the distance to the partner embedding.
            flipped = MixPlan(plan.perm, plan.partner_pos, torch.minimum(plan.lam, 1 - plan.lam), plan.eligible)
            mixed = flipped.mix(own)
            priority = (table[plan.partner_ids(ids)] - own).float().norm(dim=-1) * plan.mixed
        new_ids = self._project(mixed, ids, plan.mixed, plan.eligible, priority, proj, generator)
        return self._finish(batch, new_ids, plan.eligible, extra, ctx)


class AugProFGSM(_ProjectingAugmenter):
    """AugPro-FGSM: an FGSM step on the student's word embeddings, then project.

    Args:
        eps: step in units of the table's per-dimension standard deviation.
        degree: exact share of eligible tokens to change, or ``None``.
        projection_table: ``student`` (default: the perturbation lives in the student's space)
            or ``teacher`` (the same signed step applied to the teacher's table, scaled by its std).
        chunk_size: positions per projection GEMM.
    """

    name = "augpro-fgsm"
    gradient_from_forward = True

    def __init__(self, eps: float = 4.0, degree: float | None = None, projection_table: str = "student",
                 chunk_size: int = 256):
        if projection_table not in PROJECTION_TABLES:
            raise ValueError(f"projection_table must be one of {PROJECTION_TABLES}")
        self.eps = eps
        self.degree = degree
        self.projection_table = projection_table
        self.chunk_size = chunk_size

    def augment(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                copy: int = 0) -> AugmentedBatch:
        ids = batch["input_ids"]
        e_adv, grad_norm, eligible = fgsm_step(batch, ctx, self.eps)
        model, frozen = self._table_model(ctx)
        with torch.no_grad():
            if model is not ctx.student:
                # carry the signed step over to the teacher's table, in its own std units
                s_table = word_embeddings(ctx.student).detach()
                t_table = word_embeddings(model).detach()
                if s_table.shape[1] != t_table.shape[1]:
                    raise ValueError("projection_table=teacher needs equal embedding sizes")
                sign = torch.sign(e_adv - s_table[ids])
                e_adv = t_table[ids] + self.eps * column_std(t_table) * sign
            proj = self._projector(model, ctx, frozen)
            new_ids = self._project(e_adv, ids, eligible, eligible, grad_norm, proj, generator)
        return self._finish(batch, new_ids, eligible)
