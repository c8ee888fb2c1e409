"""Token replacement at an exact degree: ``knn``, ``mask`` and ``random``.

With degree ``p`` exactly ``round(p * n_eligible)`` eligible positions of each example change
(sampled without replacement), each to a token different from the original:

* ``knn``: one of the original token's top-``k`` cosine neighbours in the teacher's word-embedding
  table (a precomputed ``[V, k]`` table, so replacement is a gather);
* ``mask``: the tokenizer's mask token;
* ``random``: a uniformly drawn allowed token other than the original.

Eligible positions are real, non-special tokens (WordPiece pieces count individually).
"""

from __future__ import annotations

import torch

from augpro.augment.base import pick_exact, PrepareContext
from augpro.augment.pool import PooledAugmenter, PoolView, flatten, offsets_of
from augpro.augment.project import allowed_vocab_mask, special_ids_tensor
from augpro.cache import cached_tensor, fingerprint

REPLACE_METHODS = ("knn", "mask", "random")


@torch.no_grad()
def knn_table(table: torch.Tensor, allowed: torch.Tensor, k: int = 16, chunk_size: int = 1024) -> torch.Tensor:
    """``[V, k]`` top-``k`` cosine neighbours of every token among allowed tokens, self excluded."""
    table = table.detach().float()
    normed = table / table.norm(dim=1, keepdim=True).clamp(min=1e-12)
    allowed_ids = allowed.nonzero().squeeze(1)
    cand = normed[allowed_ids]  # [A, d]
    out = torch.empty(table.shape[0], k, dtype=torch.long)
    for start in range(0, table.shape[0], chunk_size):
        stop = min(table.shape[0], start + chunk_size)
        sims = normed[start:stop] @ cand.t()  # [c, A]
        # exclude self
        self_pos = torch.searchsorted(allowed_ids, torch.arange(start, stop))
        hit = (self_pos < len(allowed_ids)) & (allowed_ids[self_pos.clamp(max=len(allowed_ids) - 1)] == torch.arange(start, stop))
        rows = torch.arange(stop - start)[hit]
        sims[rows, self_pos[hit]] = float("-inf")
        out[start:stop] = allowed_ids[sims.topk(k, dim=1).indices]
    return out


def cached_knn_table(table: torch.Tensor, allowed: torch.Tensor, k: int = 16) -> torch.Tensor:
    """:func:`knn_table`, cached on disk by the table's content."""
    key = fingerprint(table.detach().float()[:: max(1, table.shape[0] // 512)], table.shape, allowed, k)
    return cached_tensor("knn", key, lambda: knn_table(table, allowed, k))


def replace_tokens(
    input_ids: torch.Tensor,
    eligible: torch.Tensor,
    degree: float,
    method: str,
    generator: torch.Generator,
    *,
    allowed: torch.Tensor,
    neighbours: torch.Tensor | None = None,
    mask_token_id: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replace exactly ``round(degree * n_eligible)`` eligible positions per row.

    Returns the new ids ``[B, L]`` and the selection mask (the positions that changed).
    """
    if not 0.0 <= degree <= 1.0:
        raise ValueError(f"degree must be in [0, 1], got {degree}")
    scores = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    selected, _ = pick_exact(scores, eligible, degree)
    orig = input_ids[selected]
    if method == "knn":
        if neighbours is None:
            raise ValueError("knn replacement needs a neighbour table")
        col = torch.randint(0, neighbours.shape[1], orig.shape, generator=generator)
        new = neighbours[orig, col]
    elif method == "mask":
        if mask_token_id is None:
            raise ValueError("this tokenizer has no mask token")
        new = torch.full_like(orig, mask_token_id)
    elif method == "random":
        allowed_ids = allowed.nonzero().squeeze(1)
        r = torch.randint(0, len(allowed_ids) - 1, orig.shape, generator=generator)
        new = allowed_ids[r]
        # uniform over allowed \ {orig}: a draw equal to the original becomes the last id
        new = torch.where(new == orig, allowed_ids[-1], new)
    else:
        raise ValueError(f"unknown replacement method {method!r}; choose from {REPLACE_METHODS}")
    out = input_ids.clone()
    out[selected] = new
    return out, selected


class TokenReplacement(PooledAugmenter):
    """Token replacement into an offline pool of ``copies`` views (teacher logits cached).

    Args:
        method: ``knn``, ``mask`` or ``random``.
        degree: share of eligible tokens replaced in every example (exact).
        knn_k: neighbours per token for ``knn``.
        embedding_table: ``[V, d]`` table for ``knn`` neighbours (the teacher's).
    """

    def __init__(self, method: str = "knn", degree: float = 0.3, knn_k: int = 16,
                 embedding_table: torch.Tensor | None = None, batch_size: int = 512):
        if method not in REPLACE_METHODS:
            raise ValueError(f"unknown replacement method {method!r}; choose from {REPLACE_METHODS}")
        self.method = method
        self.name = method
        self.degree = degree
        self.knn_k = knn_k
        self.embedding_table = embedding_table
        self.batch_size = batch_size

    def _tables(self, tok) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(allowed [V], is_special [V], neighbours [V, k] or None)`` for ``tok``, built once
        per tokenizer (a pool of ``copies`` views asks ``copies`` times)."""
        key = (id(tok), len(tok))
        if getattr(self, "_tables_key", None) != key:
            allowed = allowed_vocab_mask(tok, None if self.embedding_table is None else self.embedding_table.shape[0])
            special = special_ids_tensor(tok)
            size = max(len(allowed), int(special.max()) + 1 if len(special) else 0, len(tok))
            is_special = torch.zeros(size, dtype=torch.bool)
            is_special[special] = True
            neighbours = None
            if self.method == "knn":
                if self.embedding_table is None:
                    raise ValueError("knn replacement needs the teacher's embedding table")
                neighbours = cached_knn_table(self.embedding_table, allowed, self.knn_k)
            self._tables_cache = (allowed, is_special, neighbours)
            self._tables_key = key
        return self._tables_cache

    def build_view(self, ctx: PrepareContext, copy: int) -> PoolView:
        """One replaced copy of the training set, ragged, with no per-example Python.

        Rows are processed in chunks of ``batch_size`` padded to the chunk's longest row, so the
        random draws (and hence the output) depend only on the seed and ``batch_size``.
        """
        tok = ctx.tokenizer
        allowed, is_special, neighbours = self._tables(tok)
        flat, lengths = flatten(ctx.input_ids)
        if len(flat) and int(flat.max()) >= len(is_special):
            raise ValueError(f"token id {int(flat.max())} is outside the vocabulary ({len(is_special)} ids)")
        offsets = offsets_of(lengths)
        eligible = ~is_special[flat]
        new_flat = flat.clone()
        selected = torch.zeros(len(flat), dtype=torch.bool)
        pad = tok.pad_token_id or 0
        for start in range(0, len(lengths), self.batch_size):
            idx = torch.arange(start, min(len(lengths), start + self.batch_size))
            lo = int(offsets[idx[0]])
            hi = lo + int(lengths[idx].sum())
            # the chunk's rows are contiguous in the flat tensor, in row-major order
            lens = lengths[idx]
            mask = torch.arange(int(lens.max()))[None] < lens[:, None]
            ids = torch.full(mask.shape, pad, dtype=flat.dtype)
            ids[mask] = flat[lo:hi]
            elig = torch.zeros_like(mask)
            elig[mask] = eligible[lo:hi]
            new, sel = replace_tokens(ids, elig, self.degree, self.method, ctx.generator, allowed=allowed,
                                      neighbours=neighbours, mask_token_id=tok.mask_token_id)
            new_flat[lo:hi] = new[mask]
            selected[lo:hi] = sel[mask]
        row_of = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        changed = torch.zeros(len(lengths), dtype=torch.long).index_add_(0, row_of, selected.long())
        eligible_n = torch.zeros(len(lengths), dtype=torch.long).index_add_(0, row_of, eligible.long())
        type_ids = None if ctx.token_type_ids is None else flatten(ctx.token_type_ids)[0]
        return PoolView(new_flat, lengths, type_ids, changed, eligible_n)
