"""Projection of embeddings to their nearest vocabulary tokens.

``P(e)_i = argmin_w ||e_i - E[w]||_2`` over the vocabulary minus special and unused tokens.
``||e - E_w||^2 = ||e||^2 - 2 e.E_w + ||E_w||^2``; the first term is constant per position, so
the search is one fused ``addmm`` (``||E_w||^2 - 2 e E^T``) and an ``argmin`` per chunk of
positions. Chunks bound the extra memory to ``chunk_size * V`` floats: no ``[B*L, V]`` matrix
of a whole batch is ever built. Only the positions asked for are searched (callers pass the
real, non-special ones).
"""

from __future__ import annotations

import re

import torch

_UNUSED = re.compile(r"^\[unused\d+\]$|^<unused\d+>$")


def allowed_vocab_mask(tokenizer, vocab_size: int | None = None) -> torch.Tensor:
    """``[V]`` bool: tokens an augmenter may produce (not special, not ``[unused*]``)."""
    vocab = tokenizer.get_vocab()
    size = vocab_size or max(len(tokenizer), max(vocab.values()) + 1)
    mask = torch.ones(size, dtype=torch.bool)
    for tok, i in vocab.items():
        if i < size and _UNUSED.match(tok):
            mask[i] = False
    for i in tokenizer.all_special_ids:
        if i is not None and i < size:
            mask[i] = False
    return mask


def special_ids_tensor(tokenizer) -> torch.Tensor:
    """Ids augmenters must never change: the tokenizer's special tokens."""
    return torch.tensor(sorted({i for i in tokenizer.all_special_ids if i is not None}), dtype=torch.long)


class Projector:
    """Exact L2 nearest-token search over an embedding table.

    Args:
        table: ``[V, d]`` word-embedding weights (read live: pass the module's weight and a
            changed table is used at the next call; call :meth:`refresh` after updates).
        allowed: ``[V]`` bool mask of tokens that may be returned.
        chunk_size: positions searched per GEMM; extra memory is ``chunk_size * V * 4`` bytes.
    """

    def __init__(self, table: torch.Tensor, allowed: torch.Tensor, chunk_size: int = 256):
        if allowed.shape[0] < table.shape[0]:  # tables padded past the tokenizer's size
            allowed = torch.cat([allowed, torch.zeros(table.shape[0] - allowed.shape[0], dtype=torch.bool)])
        self.table = table
        self.allowed = allowed[: table.shape[0]].to(table.device)
        self.chunk_size = chunk_size
        self.refresh()

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute squared norms (after the table's weights changed)."""
        table = self.table.detach()
        norms = (table.float() * table.float()).sum(1)
        self._bias = norms.masked_fill(~self.allowed, float("inf"))

    @torch.no_grad()
    def project(self, emb: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Nearest allowed token of each row of ``emb`` ``[n, d]``.

        With ``exclude`` ``[n]`` (token ids), row ``i`` never returns ``exclude[i]``: the
        nearest *other* token, used to force a change at a chosen position.
        """
        n = emb.shape[0]
        out = torch.empty(n, dtype=torch.long, device=emb.device)
        if n == 0:
            return out
        table_t = self.table.detach().t()
        emb = emb.detach().to(table_t.dtype)
        bias = self._bias
        for start in range(0, n, self.chunk_size):
            stop = min(n, start + self.chunk_size)
            scores = torch.addmm(bias.unsqueeze(0), emb[start:stop], table_t, beta=1.0, alpha=-2.0)
            if exclude is not None:
                rows = torch.arange(stop - start, device=emb.device)
                scores[rows, exclude[start:stop]] = float("inf")
            out[start:stop] = scores.argmin(dim=1)
        return out

    def project_positions(self, emb: torch.Tensor, select: torch.Tensor,
                          exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Project only the positions where ``select`` ``[B, L]`` is true; returns ids ``[k]``."""
        flat = emb[select]
        excl = exclude[select] if exclude is not None else None
        return self.project(flat, excl)
