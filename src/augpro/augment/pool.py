"""Offline pools: ``copies`` augmented views of every training example, built once.

Augmenters that need no live model subclass :class:`PooledAugmenter` and implement
:meth:`PooledAugmenter.build_view`. The teacher's logits on each view are computed once
(and cached on disk by the trainer's ``label_pool``), so KD on a pool costs no teacher forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from augpro.augment.base import AugmentContext, AugmentedBatch, Augmenter, Batch, PrepareContext


@dataclass
class PoolView:
    """One augmented copy of the whole training set.

    ``input_ids``/``token_type_ids`` are unpadded lists aligned with the training set;
    ``changed``/``eligible`` count positions (or words) per example.
    """

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    changed: torch.Tensor
    eligible: torch.Tensor
    texts: list[tuple[str, ...]] | None = None
    teacher_logits: torch.Tensor | None = None

    def encodings(self) -> dict[str, list]:
        enc = {"input_ids": self.input_ids, "attention_mask": [[1] * len(x) for x in self.input_ids]}
        if self.token_type_ids is not None:
            enc["token_type_ids"] = self.token_type_ids
        return enc


def pad_rows(rows: list[list[int]], pad: int) -> torch.Tensor:
    length = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (length - len(r)) for r in rows], dtype=torch.long)


class PooledAugmenter(Augmenter):
    """An augmenter whose views are precomputed in :meth:`prepare` and gathered per batch."""

    pad_token_id: int = 0

    def build_view(self, ctx: PrepareContext, copy: int) -> PoolView:
        raise NotImplementedError

    def prepare(self, ctx: PrepareContext) -> None:
        self.pad_token_id = ctx.tokenizer.pad_token_id or 0
        self._pool: list[PoolView] = []
        for copy in range(ctx.copies):
            view = self.build_view(ctx, copy)
            if ctx.label_pool is not None:
                view.teacher_logits = ctx.label_pool(view.encodings())
            self._pool.append(view)

    @property
    def pool(self) -> list[PoolView]:
        if not getattr(self, "_pool", None):
            raise RuntimeError(f"{self.name}: call prepare() before augment()")
        return self._pool

    def augment(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                copy: int = 0) -> AugmentedBatch:
        view = self.pool[copy % len(self.pool)]
        idx = batch["idx"].tolist()
        device = batch["input_ids"].device
        ids = pad_rows([view.input_ids[i] for i in idx], self.pad_token_id).to(device)
        inputs: Batch = {"input_ids": ids, "attention_mask": (ids != self.pad_token_id).long()}
        # Rows are unpadded lists, so the mask is exactly "position < length".
        lengths = torch.tensor([len(view.input_ids[i]) for i in idx], device=device)
        inputs["attention_mask"] = (torch.arange(ids.shape[1], device=device)[None] < lengths[:, None]).long()
        if view.token_type_ids is not None and "token_type_ids" in batch:
            inputs["token_type_ids"] = pad_rows([view.token_type_ids[i] for i in idx], 0).to(device)
        logits = view.teacher_logits[idx].to(device) if view.teacher_logits is not None else None
        return AugmentedBatch(
            student_inputs=inputs,
            teacher_inputs=None if logits is not None else inputs,
            teacher_logits=logits,
            changed=view.changed[idx].to(device),
            eligible=view.eligible[idx].to(device),
        )
