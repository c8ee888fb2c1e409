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

from augpro.augment.base import AugmentContext, AugmentedBatch, Batch, eligible_mask, pick_exact, PrepareContext
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


def _check(method: str, degree: float, neighbours: torch.Tensor | None, mask_token_id: int | None) -> None:
    if not 0.0 <= degree <= 1.0:
        raise ValueError(f"degree must be in [0, 1], got {degree}")
    if method not in REPLACE_METHODS:
        raise ValueError(f"unknown replacement method {method!r}; choose from {REPLACE_METHODS}")
    if method == "knn" and neighbours is None:
        raise ValueError("knn replacement needs a neighbour table")
    if method == "mask" and mask_token_id is None:
        raise ValueError("this tokenizer has no mask token")


def _draw(method: str, n: int, generator: torch.Generator, allowed_ids: torch.Tensor,
          neighbours: torch.Tensor | None) -> torch.Tensor | None:
    """The random draw behind ``n`` replacements: a neighbour rank (knn) or a token rank (random)."""
    if method == "knn":
        return torch.randint(0, neighbours.shape[1], (n,), generator=generator)
    if method == "random":
        return torch.randint(0, len(allowed_ids) - 1, (n,), generator=generator)
    return None


def _new_tokens(orig: torch.Tensor, method: str, draw: torch.Tensor | None, allowed_ids: torch.Tensor,
                neighbours: torch.Tensor | None, mask_token_id: int | None) -> torch.Tensor:
    """Replacement tokens for the original tokens ``orig`` given :func:`_draw`'s draw."""
    if method == "knn":
        return neighbours[orig, draw.to(orig.device)]
    if method == "mask":
        return torch.full_like(orig, mask_token_id)
    new = allowed_ids[draw.to(orig.device)]
    # uniform over allowed \ {orig}: a draw equal to the original becomes the last id
    return torch.where(new == orig, allowed_ids[-1], new)


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
    """Replace exactly ``round(degree * n_eligible)`` eligible positions per row of a padded batch.

    Positions: the highest of one uniform score per position (``torch.rand`` of the batch's
    shape). Returns the new ids ``[B, L]`` and the selection mask (the positions that changed).
    """
    _check(method, degree, neighbours, mask_token_id)
    allowed_ids = allowed.nonzero().squeeze(1)
    scores = torch.rand(input_ids.shape, generator=generator, device=input_ids.device)
    selected, _ = pick_exact(scores, eligible, degree)
    orig = input_ids[selected]
    new = _new_tokens(orig, method, _draw(method, len(orig), generator, allowed_ids, neighbours), allowed_ids,
                      neighbours, mask_token_id)
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
        """``(allowed token ids, is_special [V], neighbours [V, k] or None)`` for ``tok``, built once
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
            self._tables_cache = (allowed.nonzero().squeeze(1), is_special, neighbours)
            self._tables_key = key
        return self._tables_cache

    def augment_directly(self, batch: Batch, ctx: AugmentContext, generator: torch.Generator,
                         vocab) -> AugmentedBatch:
        """Replace tokens of ``batch`` itself (no pool): exactly ``round(degree * n_eligible)``
        eligible positions per row, drawn as :func:`replace_tokens` draws them. ``knn`` takes its
        neighbours from ``embedding_table``, else from the teacher's (or the student's) table."""
        ids = batch["input_ids"]
        eligible = eligible_mask(ids, batch["attention_mask"], ctx.special_ids)
        neighbours = self._direct_neighbours(ctx, vocab.allowed) if self.method == "knn" else None
        if self.method == "mask" and vocab.mask_token_id is None:
            raise ValueError("mask replacement needs the mask token's id: pass tokenizer=")
        new, selected = replace_tokens(ids.cpu(), eligible.cpu(), self.degree, self.method, generator,
                                       allowed=vocab.allowed.cpu(), neighbours=neighbours,
                                       mask_token_id=vocab.mask_token_id)
        inputs = {"input_ids": new.to(ids.device),
                  **{k: batch[k] for k in ("attention_mask", "token_type_ids") if k in batch}}
        return AugmentedBatch(student_inputs=inputs, teacher_inputs=inputs, changed=selected.sum(1).to(ids.device),
                              eligible=eligible.sum(1))

    def _direct_neighbours(self, ctx: AugmentContext, allowed: torch.Tensor) -> torch.Tensor:
        """The ``[V, k]`` neighbour table for :meth:`augment_directly`, kept for the next batch."""
        table = self.embedding_table
        if table is None:
            model = ctx.teacher if ctx.teacher is not None else ctx.student
            if model is None:
                raise ValueError("knn replacement needs an embedding table: pass teacher= or student= "
                                 "(or embedding_table= to TokenReplacement)")
            table = model.get_input_embeddings().weight
        key = (table.data_ptr(), tuple(table.shape), self.knn_k, int(allowed.sum()))
        cached = self.__dict__.get("_direct_knn")
        if cached is None or cached[0] != key:
            cached = (key, cached_knn_table(table.detach().cpu(), allowed.cpu(), self.knn_k))
            self._direct_knn = cached
        return cached[1]

    def build_view(self, ctx: PrepareContext, copy: int) -> PoolView:
        """One replaced copy of the training set, ragged, with no per-example Python.

        Draws exactly what :func:`replace_tokens` draws on the training set cut into chunks of
        ``batch_size`` rows, each padded to its longest row (so the output depends only on the
        seed and ``batch_size``), but picks the positions with one sort over all real tokens.
        """
        tok = ctx.tokenizer
        allowed_ids, is_special, neighbours = self._tables(tok)
        _check(self.method, self.degree, neighbours, tok.mask_token_id)
        flat, lengths = flatten(ctx.input_ids)
        n_rows = len(lengths)
        offsets = offsets_of(lengths)
        row_of = torch.repeat_interleave(torch.arange(n_rows), lengths)
        pos_in_row = torch.arange(len(flat)) - offsets[row_of]
        eligible = ~is_special[flat]
        n_eligible = torch.zeros(n_rows, dtype=torch.long).index_add_(0, row_of, eligible.long())
        # Python's round (half to even) of degree * n, in float64 as Python computes it
        k = torch.round(n_eligible.double() * self.degree).long()
        # The draws, chunk by chunk in replace_tokens' order: a chunk's scores (one per position of
        # the chunk padded to its longest row), then its picks; the scores go to one buffer and
        # every real token reads its own with one gather.
        bs = self.batch_size
        n_chunks = -(-n_rows // bs)
        padded_lengths = torch.zeros(n_chunks * bs, dtype=torch.long)
        padded_lengths[:n_rows] = lengths
        width = padded_lengths.view(n_chunks, bs).amax(1)
        rows_in = torch.full((n_chunks,), bs, dtype=torch.long)
        if n_chunks:
            rows_in[-1] = n_rows - bs * (n_chunks - 1)
        size = rows_in * width
        base = offsets_of(size)
        picks = torch.zeros(n_chunks * bs, dtype=torch.long)
        picks[:n_rows] = k
        picks = picks.view(n_chunks, bs).sum(1)
        buf = torch.empty(int(size.sum()))
        draws: list[torch.Tensor] = []
        for b, r, w, n in zip(base.tolist(), rows_in.tolist(), width.tolist(), picks.tolist()):
            torch.rand((r, w), generator=ctx.generator, out=buf[b:b + r * w].view(r, w))
            draw = _draw(self.method, n, ctx.generator, allowed_ids, neighbours)
            if draw is not None:
                draws.append(draw)
        chunk = row_of // bs
        scores = buf[base[chunk] + (row_of - chunk * bs) * width[chunk] + pos_in_row]
        # the k highest scores of each row's eligible tokens, ties to the earlier position (as
        # pick_exact's stable sort): rand's floats are multiples of 2^-24, so the key is exact
        q = (scores * 2**24).long()
        key = (row_of << 25) | torch.where(eligible, (2**24 - 1) - q, torch.full_like(q, 2**24))
        order = key.argsort(stable=True)
        # rows keep their place in the sorted order (the row is the key's high part), so the
        # i-th sorted token of row r is the i-th position of row r: take the first k of each
        first_k = pos_in_row < k[row_of]
        selected = torch.zeros(len(flat), dtype=torch.bool)
        selected[order[first_k]] = True
        draw = torch.cat(draws) if draws else torch.zeros(0, dtype=torch.long)
        new_flat = flat.clone()
        new_flat[selected] = _new_tokens(flat[selected], self.method, draw, allowed_ids, neighbours, tok.mask_token_id)
        changed = torch.zeros(n_rows, dtype=torch.long).index_add_(0, row_of, selected.long())
        type_ids = None if ctx.token_type_ids is None else flatten(ctx.token_type_ids)[0]
        return PoolView(new_flat, lengths, type_ids, changed, n_eligible)
