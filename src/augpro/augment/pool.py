"""Offline pools: ``copies`` augmented views of every training example, built once.

Augmenters that need no live model subclass :class:`PooledAugmenter` and implement
:meth:`PooledAugmenter.build_view`. The teacher's logits on each view are computed once
(and cached on disk by the trainer's ``label_pool``), so KD on a pool costs no teacher forward.

A view stores its token ids *ragged*: one flat id tensor plus per-example offsets and lengths,
so building a view and gathering a batch from it are tensor operations with no per-example
Python (the lists-of-lists form is available, built lazily, for the code that wants it).
"""

from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from augpro.augment.base import AugmentContext, AugmentedBatch, Augmenter, Batch, PrepareContext
from augpro.errors import UserError

#: environment variable that sets the largest offline pool, in GB (10^9 bytes)
MAX_POOL_ENV = "AUGPRO_MAX_POOL_GB"
#: the default limit: an estimate above it is refused before anything is built
DEFAULT_MAX_POOL_GB = 2.0
#: memory of one pooled view, measured (RSS) on SST-2 and RTE: 8 bytes per token id and per
#: token type id, 24 bytes of per-example counts plus teacher logits, about 16 KiB of tensor
#: objects per view, and about 1 KiB per example of kept text for word-level methods
_ID_BYTES, _EXAMPLE_BYTES, _VIEW_BYTES, _TEXT_EXAMPLE_BYTES = 8, 24 + 4 * 3, 16 * 1024, 1024


def max_pool_bytes() -> float:
    """The pool size limit: ``$AUGPRO_MAX_POOL_GB`` GB, else :data:`DEFAULT_MAX_POOL_GB`."""
    raw = os.environ.get(MAX_POOL_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_POOL_GB * 1e9
    try:
        value = float(raw)
    except ValueError:
        raise UserError(f"{MAX_POOL_ENV}={raw!r} is not a number of GB") from None
    if not value > 0:
        raise UserError(f"{MAX_POOL_ENV} must be positive, got {raw}")
    return value * 1e9


def estimate_view_bytes(n_tokens: int, n_examples: int, token_types: bool, writes_text: bool) -> int:
    """Memory of one pooled view of ``n_examples`` examples holding ``n_tokens`` tokens in all."""
    per_token = _ID_BYTES * (2 if token_types else 1)
    per_example = _EXAMPLE_BYTES + (_TEXT_EXAMPLE_BYTES if writes_text else 0)
    return n_tokens * per_token + n_examples * per_example + _VIEW_BYTES


def check_pool_size(view_bytes: int, copies: int, n_examples: int, what: str = "an offline pool",
                    limit: float | None = None) -> None:
    """Refuse ``copies`` views of ``view_bytes`` each when they exceed the limit (:func:`max_pool_bytes`),
    with a one-line :class:`~augpro.errors.UserError` that says how many copies would fit."""
    limit = max_pool_bytes() if limit is None else limit
    total = view_bytes * copies
    if total <= limit:
        return
    fits = int(limit // max(1, view_bytes))
    raise UserError(f"--copies {copies} would hold {what} of about {_size(total)} in memory ({copies} views of "
                    f"{n_examples} examples); the limit is {_size(limit)}. Use --copies {max(1, fits)} or fewer"
                    f", or raise the limit with {MAX_POOL_ENV}=N (GB)")


def _size(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


def flatten(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Ragged rows to ``(flat ids [N], lengths [B])`` with no per-row Python."""
    lengths = torch.from_numpy(np.fromiter(map(len, rows), dtype=np.int64, count=len(rows)))
    total = int(lengths.sum())
    flat = torch.from_numpy(np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=total))
    return flat, lengths


def offsets_of(lengths: torch.Tensor) -> torch.Tensor:
    """Start of every row in the flat tensor."""
    return torch.cumsum(lengths, 0) - lengths


def gather_padded(flat: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, idx: torch.Tensor,
                  pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows ``idx`` of a ragged tensor, right-padded: ``(ids [b, L], mask [b, L])``."""
    lens = lengths[idx]
    width = int(lens.max()) if len(idx) else 0
    cols = torch.arange(width)
    mask = cols[None] < lens[:, None]
    pos = (offsets[idx][:, None] + cols[None]).clamp(max=max(0, len(flat) - 1))
    ids = flat[pos] if len(flat) else torch.zeros(len(idx), width, dtype=flat.dtype)
    return ids.masked_fill(~mask, pad), mask


@dataclass
class PoolView:
    """One augmented copy of the whole training set, ragged.

    ``ids``/``type_ids`` are flat tensors of every example's tokens end to end (``type_ids`` is
    ``None`` for tokenizers without token types); ``lengths`` gives each example's length, in
    training-set order. ``changed``/``eligible`` count positions (or words) per example.
    """

    ids: torch.Tensor
    lengths: torch.Tensor
    type_ids: torch.Tensor | None
    changed: torch.Tensor
    eligible: torch.Tensor
    texts: list[tuple[str, ...]] | None = None
    teacher_logits: torch.Tensor | None = None

    @classmethod
    def from_lists(cls, input_ids: list[list[int]], token_type_ids: list[list[int]] | None,
                   changed: torch.Tensor, eligible: torch.Tensor,
                   texts: list[tuple[str, ...]] | None = None) -> "PoolView":
        """A view from unpadded per-example lists (as a tokenizer returns them)."""
        ids, lengths = flatten(input_ids)
        type_ids = None if token_type_ids is None else flatten(token_type_ids)[0]
        return cls(ids, lengths, type_ids, changed, eligible, texts)

    def __len__(self) -> int:
        return len(self.lengths)

    @cached_property
    def offsets(self) -> torch.Tensor:
        return offsets_of(self.lengths)

    def _split(self, flat: torch.Tensor) -> list[list[int]]:
        values = flat.tolist()
        return [values[o:o + n] for o, n in zip(self.offsets.tolist(), self.lengths.tolist())]

    @property
    def input_ids(self) -> list[list[int]]:
        """Per-example token ids as lists (built on each access; prefer :meth:`gather`)."""
        return self._split(self.ids)

    @property
    def token_type_ids(self) -> list[list[int]] | None:
        return None if self.type_ids is None else self._split(self.type_ids)

    def gather(self, idx: torch.Tensor, pad: int) -> Batch:
        """Model inputs for examples ``idx``: padded ids, attention mask and token types."""
        ids, mask = gather_padded(self.ids, self.offsets, self.lengths, idx, pad)
        out: Batch = {"input_ids": ids, "attention_mask": mask.long()}
        if self.type_ids is not None:
            out["token_type_ids"] = gather_padded(self.type_ids, self.offsets, self.lengths, idx, 0)[0]
        return out

    def encodings(self) -> dict[str, list]:
        enc = {"input_ids": self.input_ids}
        enc["attention_mask"] = [[1] * len(x) for x in enc["input_ids"]]
        if self.type_ids is not None:
            enc["token_type_ids"] = self.token_type_ids
        return enc


class PooledAugmenter(Augmenter):
    """An augmenter whose views are precomputed in :meth:`prepare` and gathered per batch.

    With different teacher and student tokenizers (``ctx.retokenize``) each view is built in the
    teacher's tokenization (teacher logits are computed on it) and re-tokenized once for the
    student: from the augmented texts where the augmenter wrote texts, else by decoding.
    """

    pad_token_id: int = 0
    #: whether views keep their augmented text (word-level methods): more memory per example
    writes_text: bool = False

    def build_view(self, ctx: PrepareContext, copy: int) -> PoolView:
        raise NotImplementedError

    def prepare(self, ctx: PrepareContext) -> None:
        """Build ``ctx.copies`` views, after checking their estimated size (:func:`check_pool_size`)."""
        view = estimate_view_bytes(sum(map(len, ctx.input_ids)), len(ctx.input_ids), ctx.token_type_ids is not None,
                                   self.writes_text)
        # across tokenizers every view is kept twice (teacher tokens and the student's re-tokenized copy)
        check_pool_size(view * (2 if ctx.retokenize is not None else 1), ctx.copies, len(ctx.input_ids))
        self._teacher_pad = ctx.tokenizer.pad_token_id or 0
        self._pool: list[PoolView] = []
        self._teacher_pool: list[PoolView] | None = [] if ctx.retokenize is not None else None
        rt = ctx.retokenize
        self.pad_token_id = (rt.student_tokenizer.pad_token_id or 0) if rt is not None else self._teacher_pad
        for copy in range(ctx.copies):
            view = self.build_view(ctx, copy)
            if ctx.label_pool is not None:
                view.teacher_logits = ctx.label_pool(view.encodings())
            if rt is not None:
                texts = view.texts if view.texts is not None else rt.texts(view.input_ids, view.token_type_ids)
                enc = rt.encode(texts)
                student = PoolView.from_lists(enc["input_ids"], enc.get("token_type_ids"), view.changed,
                                              view.eligible, texts=texts)
                student.teacher_logits = view.teacher_logits
                self._teacher_pool.append(view)
                view = student
            self._pool.append(view)

    @property
    def pool(self) -> list[PoolView]:
        """The views the student reads (re-tokenized ones across tokenizers)."""
        if not getattr(self, "_pool", None):
            raise RuntimeError(f"{self.name}: call prepare() before augment()")
        return self._pool

    def augment(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                copy: int = 0) -> AugmentedBatch:
        c = copy % len(self.pool)
        view = self.pool[c]
        idx = batch["idx"].cpu()
        device = batch["input_ids"].device
        inputs = {k: v.to(device) for k, v in view.gather(idx, self.pad_token_id).items()
                  if k != "token_type_ids" or "token_type_ids" in batch}
        logits = view.teacher_logits[idx].to(device) if view.teacher_logits is not None else None
        teacher_inputs = None
        if logits is None:
            if self._teacher_pool is not None:
                teacher_inputs = {k: v.to(device) for k, v in self._teacher_pool[c].gather(idx, self._teacher_pad).items()}
            else:
                teacher_inputs = inputs
        return AugmentedBatch(
            student_inputs=inputs,
            teacher_inputs=teacher_inputs,
            teacher_logits=logits,
            changed=view.changed[idx].to(device),
            eligible=view.eligible[idx].to(device),
        )
