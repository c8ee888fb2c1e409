"""Projection of embeddings to their nearest vocabulary tokens.

``P(e)_i = argmin_w ||e_i - E[w]||_2`` over the vocabulary minus special and unused tokens.

**Exact search.** ``||e - E_w||^2 = ||e||^2 - 2 e.E_w + ||E_w||^2``: one ``[n, d] x [d, V]`` GEMM per
chunk of positions and a row minimum. Chunks bound the extra memory (no ``[n, V]`` matrix of a
whole batch is built, and :meth:`Projector.project_positions` gathers the selected positions one
chunk at a time). Only the positions asked for are searched (callers pass the real,
non-special ones).

**Certified bf16 screening** (CPUs with native bf16 dot products, e.g. AVX512-BF16/AMX): the GEMM
runs in bfloat16 (about 3x the fp32 speed on such CPUs) on operands arranged so that it returns
``||e - E_w||^2`` directly. Every screened value comes with a rigorous error bound (input rounding
of ``e`` and ``E``, the split of the norms, fp32 accumulation, output rounding). Per position the
4 smallest screened values are kept; if the 4th already exceeds what the best one could be at
worst, the nearest token is certainly among the others, and those few are re-scored exactly in
fp32 (``||e - E_w||^2`` from the difference). Positions where that cannot be certified (near ties
of many tokens) fall back to the exact fp32 search. So the result is the exact nearest token, not
an approximation; it only arrives sooner.

**Certified pruned search for mixes** (:meth:`Projector.project_mix`): for ``e = lam a + (1-lam) b``
and any token ``w``, ``||e-w||^2 = lam ||a-w||^2 + (1-lam) ||b-w||^2 - lam (1-lam) ||a-b||^2``.
With each token's ``k`` nearest tokens and ``r`` (a lower bound on the distance to any token off
that list) precomputed once, every token outside ``{a, b} + N(a) + N(b)`` is at least
``lam r_a^2 + (1-lam) r_b^2 - lam (1-lam) ||a-b||^2`` away; when the best candidate is closer than
that, it is the exact answer without any GEMM. Other positions fall back to :meth:`project`.
"""

from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Callable

import torch

_UNUSED = re.compile(r"^\[unused\d+\]$|^<unused\d+>$")

#: unit roundoff of bfloat16 (8 significant bits) and float32 (24)
_U16 = 2.0**-8
_U32 = 2.0**-24
#: screened values kept per position; the last one certifies the others
_SCREEN_K = 4
#: second look for the rows the first cannot certify
_SCREEN_K2 = 128
#: rows re-scored at once in that second look (its temporary is rows * 128 * d floats)
_STAGE2_ROWS = 32
#: rows of the table processed at once by :meth:`Projector.refresh` (bounds its temporaries)
_REFRESH_BLOCK = 1024


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


@torch.no_grad()
def column_std(table: torch.Tensor, block: int = _REFRESH_BLOCK) -> torch.Tensor:
    """Per-dimension standard deviation of ``table`` ``[V, d]`` (unbiased, float32 result).

    Row blocks accumulated in float64: one contiguous pass, ~8x faster on CPU than
    ``table.std(dim=0)`` (a strided column reduction) and no fp32 copy of the whole table.
    """
    V, d = table.shape
    col_sum = torch.zeros(d, dtype=torch.float64, device=table.device)
    col_sq = torch.zeros(d, dtype=torch.float64, device=table.device)
    for s in range(0, V, block):
        blk = table[s:s + block].float()
        col_sum += blk.sum(0, dtype=torch.float64)
        col_sq += (blk * blk).sum(0, dtype=torch.float64)
    return ((col_sq - col_sum * col_sum / V) / max(1, V - 1)).clamp(min=0).sqrt().float()


def special_ids_tensor(tokenizer) -> torch.Tensor:
    """Ids augmenters must never change: the tokenizer's special tokens."""
    return torch.tensor(sorted({i for i in tokenizer.all_special_ids if i is not None}), dtype=torch.long)


@functools.lru_cache(maxsize=None)
def _cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 dot products natively (AVX512-BF16 or AMX-BF16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def bf16_screening_available(device: torch.device | str = "cpu") -> bool:
    """Whether :class:`Projector` screens in bf16 by default on ``device``.

    Only on CPUs with native bf16 dot products. On GPUs the fp32 GEMM is already cheap and
    cuBLAS may reduce bf16 products in reduced precision, which the error bound does not cover.
    """
    return torch.device(device).type == "cpu" and _cpu_has_fast_bf16()


def _balanced_chunks(n: int, chunk_size: int) -> list[tuple[int, int]]:
    """``[start, stop)`` ranges of at most ``chunk_size`` covering ``n``, of nearly equal size
    (330 positions in chunks of 256 become 165 + 165, not 256 + 74: small GEMMs are inefficient)."""
    if n <= 0:
        return []
    parts = -(-n // max(1, chunk_size))
    size = -(-n // parts)
    return [(s, min(n, s + size)) for s in range(0, n, size)]


class Projector:
    """Exact L2 nearest-token search over an embedding table.

    Args:
        table: ``[V, d]`` word-embedding weights (read live: pass the module's weight and a
            changed table is used at the next call; call :meth:`refresh` after updates).
        allowed: ``[V]`` bool mask of tokens that may be returned.
        chunk_size: positions searched per GEMM. The screening matrix, ``chunk_size * V * 2``
            bytes with bf16 screening (``chunk_size * V * 4`` without), is kept between calls;
            the bf16 operand adds ``V * (d + 4) * 2`` bytes. A call's own temporaries are small
            (positions that fall back to the fp32 search use ``rows * V * 4`` bytes, rarely).
        screen: ``"bf16"`` (certified bf16 screening), ``"none"`` (fp32 GEMM only) or ``None``
            (bf16 where :func:`bf16_screening_available`). Both give the exact nearest token.
    """

    def __init__(self, table: torch.Tensor, allowed: torch.Tensor, chunk_size: int = 256,
                 screen: str | None = None):
        if allowed.shape[0] < table.shape[0]:  # tables padded past the tokenizer's size
            allowed = torch.cat([allowed, torch.zeros(table.shape[0] - allowed.shape[0], dtype=torch.bool)])
        if screen not in (None, "bf16", "none"):
            raise ValueError(f"screen must be 'bf16', 'none' or None, got {screen!r}")
        self.table = table
        self.allowed = allowed[: table.shape[0]].to(table.device)
        self.chunk_size = chunk_size
        self.screen = screen
        #: positions of the last calls that needed the fp32 fallback / that were searched
        self.stats = {"searched": 0, "fallback": 0, "mix_certified": 0, "mix_searched": 0}
        self._neighbours: tuple[torch.Tensor, torch.Tensor] | None = None
        self._workspace: dict[str, torch.Tensor] = {}
        self.refresh()

    # ------------------------------------------------------------------ setup
    @property
    def uses_bf16(self) -> bool:
        if self.screen is None:
            return bf16_screening_available(self.table.device)
        return self.screen == "bf16"

    @torch.no_grad()
    def refresh(self) -> None:
        """Recompute norms (and the bf16 screening operand) after the table's weights changed.

        Works block by block, so refreshing a live table every step never holds a second fp32
        copy of the table. The bf16 operand is built on the first screened search (a frozen table
        searched only through :meth:`project_mix` may never need it) and, once built, rebuilt in
        place by every refresh.
        """
        table = self.table.detach()
        V, d = table.shape
        dev = table.device
        if getattr(self, "_allowed_ids", None) is None or self._allowed_ids.device != dev:
            self._allowed_ids = self.allowed.nonzero().squeeze(1)
        norms = torch.empty(V, dtype=torch.float32, device=dev)
        for s in range(0, V, _REFRESH_BLOCK):
            blk = table[s:s + _REFRESH_BLOCK].float()
            torch.sum(blk * blk, dim=1, out=norms[s:s + _REFRESH_BLOCK])
        self._norms = norms
        self._bias = norms.masked_fill(~self.allowed, float("inf"))
        A = len(self._allowed_ids)
        allowed_norms = norms[self._allowed_ids]
        self._bias_max = float(allowed_norms.max()) * (1 + 1e-6) if A else 0.0
        self._norm_max = math.sqrt(self._bias_max) * (1 + 1e-6)
        self._t16_stale = True
        if not self.uses_bf16:
            self._t16 = None
        elif getattr(self, "_t16", None) is not None:
            self._operand()  # in use: keep it current

    @torch.no_grad()
    def _operand(self) -> torch.Tensor | None:
        """The bf16 screening operand ``[E_w, ||E_w||^2 (hi), ||E_w||^2 (lo), 1, 1]`` (``None``
        without bf16 screening), built or rebuilt in place when stale."""
        if not self.uses_bf16:
            return None
        if not self._t16_stale:
            return self._t16
        table = self.table.detach()
        V, d = table.shape
        dev = table.device
        if getattr(self, "_t16", None) is None or self._t16.shape != (V, d + 4) or self._t16.device != dev:
            self._t16 = torch.empty(V, d + 4, dtype=torch.bfloat16, device=dev)
        res_max = 0.0
        for s in range(0, V, _REFRESH_BLOCK):
            blk = table[s:s + _REFRESH_BLOCK].float()
            rows = self._t16[s:s + _REFRESH_BLOCK]
            rows[:, :d] = blk
            ok = self.allowed[s:s + _REFRESH_BLOCK]
            res = rows[:, :d].float().sub_(blk).norm(dim=1)
            if bool(ok.any()):
                res_max = max(res_max, float(res[ok].max()))
        norms = self._norms
        hi = self._bias.to(torch.bfloat16)  # +inf for tokens that may not be returned
        lo = torch.where(self.allowed, norms - hi.float(), torch.zeros_like(norms)).to(torch.bfloat16)
        self._t16[:, d] = hi
        self._t16[:, d + 1] = lo
        self._t16[:, d + 2:] = 1
        A = len(self._allowed_ids)
        allowed_norms = norms[self._allowed_ids]
        err = (allowed_norms - hi[self._allowed_ids].float() - lo[self._allowed_ids].float()).abs()
        self._bias_err = float(err.max()) * (1 + 1e-3) + 1e-30 if A else 0.0
        self._res_max = res_max * (1 + 1e-3) + 1e-30
        self._t16_stale = False
        return self._t16

    # ------------------------------------------------------------------ search
    @torch.no_grad()
    def project(self, emb: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Nearest allowed token of each row of ``emb`` ``[n, d]``.

        With ``exclude`` ``[n]`` (token ids), row ``i`` never returns ``exclude[i]``: the
        nearest *other* token, used to force a change at a chosen position.
        """
        emb = emb.detach()
        return self._search(lambda s, t: emb[s:t], emb.shape[0], exclude, emb.device)

    @torch.no_grad()
    def project_positions(self, emb: torch.Tensor, select: torch.Tensor,
                          exclude: torch.Tensor | None = None) -> torch.Tensor:
        """Project only the positions where ``select`` ``[B, L]`` is true; returns ids ``[k]``
        in row-major order (as ``emb[select]``). Positions are gathered one chunk at a time."""
        rows, cols = select.nonzero(as_tuple=True)
        emb = emb.detach()
        excl = exclude[rows, cols] if exclude is not None else None
        return self._search(lambda s, t: emb[rows[s:t], cols[s:t]], rows.numel(), excl, emb.device)

    def _search(self, rows_of: Callable[[int, int], torch.Tensor], n: int, exclude: torch.Tensor | None,
                out_device: torch.device) -> torch.Tensor:
        out = torch.empty(n, dtype=torch.long, device=out_device)
        if n == 0:
            return out
        dev = self.table.device
        screen = self._search_bf16 if self.uses_bf16 else self._search_fp32
        # the screening matrix is kept between calls: allocated once at its largest size, it
        # neither churns the allocator nor leaves freed-but-resident blocks behind
        buf = self._workspace
        for s, t in _balanced_chunks(n, self.chunk_size):
            e = rows_of(s, t).to(device=dev, dtype=torch.float32)
            excl = exclude[s:t].to(dev) if exclude is not None else None
            out[s:t] = screen(e, excl, buf).to(out_device)
        self.stats["searched"] += n
        return out

    def _search_fp32(self, e: torch.Tensor, exclude: torch.Tensor | None, buf: dict) -> torch.Tensor:
        """Exact search: one fused ``addmm`` (``||E_w||^2 - 2 e E^T``) and an ``argmin``."""
        c = e.shape[0]
        table_t = self.table.detach().t()
        if table_t.dtype != torch.float32:
            table_t = table_t.float()
        scores = buf.get("fp32")
        if scores is None or scores.shape[0] < c or scores.shape[1] != table_t.shape[1] or scores.device != e.device:
            rows = max(c, min(self.chunk_size, 4096))
            scores = buf["fp32"] = torch.empty(rows, table_t.shape[1], dtype=torch.float32, device=e.device)
        scores = scores[:c]
        torch.addmm(self._bias.unsqueeze(0), e, table_t, beta=1.0, alpha=-2.0, out=scores)
        if exclude is not None:
            scores[torch.arange(c, device=e.device), exclude] = float("inf")
        return scores.argmin(dim=1)

    def _screen(self, e: torch.Tensor, exclude: torch.Tensor | None, buf: dict, k: int):
        """bf16 screening of ``e`` ``[c, d]`` against the allowed tokens.

        Returns the ``k`` smallest screened squared distances (fp32, unsorted) and their token
        ids, and per row ``(delta, u)`` such that every allowed token's true squared
        distance lies in ``[s - u|s| - delta, s + u|s| + delta]`` around its screened value ``s``.
        """
        c, d = e.shape
        t16 = self._operand()
        A = t16.shape[0]
        # operand [-2 e, 1, 1, ||e||^2 (hi), ||e||^2 (lo)]: its product with t16 is ||e - E_w||^2
        e16 = e.to(torch.bfloat16)
        ee = (e * e).sum(1)
        ee_hi = ee.to(torch.bfloat16)
        ee_lo = (ee - ee_hi.float()).to(torch.bfloat16)
        lhs = torch.empty(c, d + 4, dtype=torch.bfloat16, device=e.device)
        torch.mul(e16, -2, out=lhs[:, :d])  # exact: a power of two
        lhs[:, d:d + 2] = 1
        lhs[:, d + 2] = ee_hi
        lhs[:, d + 3] = ee_lo
        scores = buf.get("bf16")
        if scores is None or scores.shape[0] < c or scores.shape[1] != A or scores.device != e.device:
            rows = max(c, min(self.chunk_size, 4096))
            scores = buf["bf16"] = torch.empty(rows, A, dtype=torch.bfloat16, device=e.device)
        scores = scores[:c]
        torch.mm(lhs, t16.t(), out=scores)
        if exclude is not None:
            scores[torch.arange(c, device=e.device), exclude] = float("inf")
        # error bound per row
        r_e = (e - e16.float()).norm(dim=1)
        e16_norm = ee.sqrt() + r_e
        delta = 2 * (r_e * self._norm_max + e16_norm * self._res_max)        # input rounding
        delta += self._bias_err + (ee - ee_hi.float() - ee_lo.float()).abs()  # norm splits
        k_terms = d + 4
        gamma = 2 * k_terms * _U32 / (1 - k_terms * _U32)                      # fp32 accumulation
        delta += gamma * (2 * e16_norm * (self._norm_max + self._res_max) + 1.01 * (self._bias_max + ee))
        delta = delta * (1 + 1e-3) + 1e-7
        vals, idx = scores.topk(min(k, A), dim=1, largest=False, sorted=False)
        return vals.float(), idx, delta, _U16 / (1 - _U16)                    # output rounding

    def _search_bf16(self, e: torch.Tensor, exclude: torch.Tensor | None, buf: dict) -> torch.Tensor:
        """Certified bf16 screening, exact fp32 re-scoring of the few survivors (module docstring).

        Rows whose 4 best screened values cannot certify the answer (near ties, or points far from
        every token, where the bf16 output's relative rounding is large) look at their best 128
        in the same screened matrix; only rows still uncertain go to the fp32 search.
        """
        vals, idx, delta, u = self._screen(e, exclude, buf, _SCREEN_K)
        out, certified = self._certify(e, vals, idx, delta, u)
        if bool(certified.all()):
            return out
        k2 = min(_SCREEN_K2, self._operand().shape[0])
        for part in (~certified).nonzero().squeeze(1).split(_STAGE2_ROWS):  # bounded temporaries
            vals2, idx2 = buf["bf16"][part].topk(k2, dim=1, largest=False, sorted=False)
            out[part], cert2 = self._certify(e[part], vals2.float(), idx2, delta[part], u)
            if not bool(cert2.all()):
                worse = part[~cert2]
                self.stats["fallback"] += worse.numel()
                out[worse] = self._search_fp32(e[worse], exclude[worse] if exclude is not None else None, {})
        return out

    def _certify(self, e: torch.Tensor, vals: torch.Tensor, idx: torch.Tensor, delta: torch.Tensor,
                 u: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact winner among the screened ``vals``/``idx`` and whether nothing else can beat it."""
        best = vals.amin(1)
        upper = best + u * best.abs() + delta            # the true minimum is at most this
        lim = upper + delta
        tau = torch.where(lim >= 0, lim / (1 - u), lim / (1 + u))  # screened > tau: certainly worse
        candidate = vals <= tau.unsqueeze(1)
        certified = vals.amax(1) > tau
        # exact re-scoring of the survivors, ties to the lowest token id (as argmin)
        full, order = idx.sort(dim=1)
        candidate = candidate.gather(1, order)
        diff = e.unsqueeze(1) - self.table.detach()[full].float()
        dist = (diff * diff).sum(-1).masked_fill(~candidate, float("inf"))
        return full.gather(1, dist.argmin(1, keepdim=True)).squeeze(1), certified

    # ------------------------------------------------------------------ pruned search for mixes
    def neighbour_table(self, k: int = 16, cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Each token's ``k`` nearest allowed tokens (L2, itself excluded) ``[V, k]`` and ``r`` ``[V]``:
        a lower bound on its distance to every allowed token off that list. Built once with the
        exact search (seconds), cached in memory and (``cache``) on disk by the table's content.
        Describes the table as it is now: for a frozen table (the teacher's)."""
        if self._neighbours is not None and self._neighbours[0].shape[1] == k:
            return self._neighbours
        from augpro.cache import cached_tensor, fingerprint

        table = self.table.detach()

        def build() -> torch.Tensor:
            nb, radius = self._build_neighbours(k)
            return torch.cat([nb.double(), radius.double().unsqueeze(1)], dim=1)

        key = fingerprint("l2-neighbours-v2", table.float().cpu(), self.allowed.cpu(), k)
        packed = cached_tensor("l2_neighbours", key, build, enabled=cache).to(table.device)
        self._neighbours = (packed[:, :k].long(), packed[:, k].float())
        return self._neighbours

    @torch.no_grad()
    def _build_neighbours(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        table = self.table.detach()
        V, d = table.shape
        A = len(self._allowed_ids)
        if A <= k + 1:
            raise ValueError(f"need more than {k + 1} allowed tokens for a {k}-neighbour table")
        nb = torch.empty(V, k, dtype=torch.long, device=table.device)
        radius = torch.empty(V, dtype=torch.float32, device=table.device)
        kk = min(A, k + 9)
        table_t = table.t().float()
        buf: dict[str, torch.Tensor] = {}
        for s, t in _balanced_chunks(V, max(256, self.chunk_size)):
            e = table[s:t].float()
            rows = torch.arange(t - s, device=e.device)
            self_ids = torch.arange(s, t, device=e.device)
            if self.uses_bf16:
                # screened top kk (self excluded); the rest is at least (screened kk-th) - error away
                vals, cidx, delta, u = self._screen(e, self_ids, buf, kk)
                idx = cidx
                last = vals.amax(1)
                outside = last - u * last.abs() - delta
            else:
                scores = torch.addmm(self._bias.unsqueeze(0), e, table_t, beta=1.0, alpha=-2.0)
                scores[rows, self_ids] = float("inf")
                vals, idx = scores.topk(kk, dim=1, largest=False, sorted=False)
                ee = (e * e).sum(1)
                slack = 4 * (d + 2) * _U32 * (ee + 2 * ee.sqrt() * self._norm_max + self._bias_max)
                outside = vals.amax(1) + ee - slack
            diff = e.unsqueeze(1) - table[idx].float()
            dist = (diff * diff).sum(-1).masked_fill(~torch.isfinite(vals) | (idx == self_ids[:, None]),
                                                     float("inf"))
            dist, order = dist.sort(dim=1)
            nb[s:t] = idx.gather(1, order)[:, :k]
            # r = min(k-th exact distance on the list, bound for everything off the screened set)
            r2 = torch.minimum(dist[:, k - 1], outside).clamp(min=0)
            radius[s:t] = r2.sqrt() * (1 - 1e-6)
        return nb, radius

    @torch.no_grad()
    def project_mix(self, a: torch.Tensor, b: torch.Tensor, lam: torch.Tensor,
                    exclude: torch.Tensor | None = None, k: int = 16) -> torch.Tensor:
        """Nearest allowed token to ``lam * E[a] + (1 - lam) * E[b]`` (all ``[n]``), exactly.

        Certified from the precomputed neighbour table without a GEMM where possible (module
        docstring), the exact search elsewhere. Equal to ``project(lam * E[a] + (1 - lam) * E[b])``.
        """
        n = a.numel()
        out = torch.empty(n, dtype=torch.long, device=a.device)
        if n == 0:
            return out
        nb, radius = self.neighbour_table(k)
        table = self.table.detach()
        dev = table.device
        for s, t in _balanced_chunks(n, self.chunk_size):
            ai, bi = a[s:t].to(dev), b[s:t].to(dev)
            lm = lam[s:t].to(dev)
            # the embedding exactly as a caller mixes it in the table's dtype
            # (``lam * E[a] + (1 - lam) * E[b]``, ``lam`` cast to that dtype)
            lt = lm.to(table.dtype).unsqueeze(1)
            e = (lt * table[ai] + (1 - lt) * table[bi]).float()
            # the bound holds for the exact mix with the weight actually used; ``eps`` is how far
            # the computed mix is from it (rounding; ~1e-7 relative in fp32)
            w = lt.squeeze(1).float()
            in_range = (w >= 0) & (w <= 1)  # the bound needs convex weights
            ea, eb = table[ai].float(), table[bi].float()
            exact = w.unsqueeze(1) * ea + (1 - w).unsqueeze(1) * eb
            eps = (e - exact).norm(dim=1)
            cand = torch.cat([ai.unsqueeze(1), bi.unsqueeze(1), nb[ai], nb[bi]], dim=1)
            valid = self.allowed[cand]
            if exclude is not None:
                valid &= cand != exclude[s:t].to(dev).unsqueeze(1)
            cand, order = cand.sort(dim=1)  # ties to the lowest id, as argmin
            valid = valid.gather(1, order)
            diff = e.unsqueeze(1) - table[cand].float()
            dist = (diff * diff).sum(-1).masked_fill(~valid, float("inf"))
            best, pick = dist.min(1)
            ids = cand.gather(1, pick.unsqueeze(1)).squeeze(1)
            # every allowed token off the candidate list is at least sqrt(bound) from the exact
            # mix, so at least sqrt(bound) - eps from the computed one
            dab = ((ea - eb) ** 2).sum(1)
            bound = w * radius[ai] ** 2 + (1 - w) * radius[bi] ** 2 - w * (1 - w) * dab
            slack = 1e-5 * (radius[ai] ** 2 + radius[bi] ** 2 + dab) + 1e-6
            far = (bound - slack).clamp(min=0).sqrt() - eps * (1 + 1e-3) - 1e-6
            certified = (best.sqrt() < far) & in_range
            if not bool(certified.all()):
                bad = (~certified).nonzero().squeeze(1)
                excl = exclude[s:t].to(dev)[bad] if exclude is not None else None
                ids[bad] = self.project(e[bad], excl)
            self.stats["mix_certified"] += int(certified.sum())
            out[s:t] = ids.to(out.device)
        self.stats["mix_searched"] += n
        return out
