"""Figure 2 — nearest-token projection: throughput, memory, pruned search, scaling.

Workload: real SST-2 batches (32 rows, dynamic padding) mixed as AugPro-Mix mixes them
(partner permutation, Beta(0.4, 0.4) weight per sequence, teacher's MiniLM table); the positions
projected are the mixed ones (real, non-special tokens with a partner token).

Contenders, interleaved on the same batch each round (another batch every round); a ratio is the
median over rounds of the per-round throughput ratio (positions/s):

* ``projection`` — :meth:`Projector.project_positions` as shipped (certified bf16 screening on
  CPUs with native bf16 dot products, exact fp32 otherwise);
* ``gemm`` — a plain ``torch.mm`` of the same shape ``[n, d] x [d, V]`` (fp32), nothing else;
* ``cdist`` — ``torch.cdist(padded batch as [B*L, d], table).argmin(-1)``: the naive search over
  every padded position (the 2-D call: the batched 3-D call expands the table per row and is
  several times slower still, so this is the conservative baseline);
* ``fp32`` — the Projector forced to its fp32 path (what CPUs without bf16 get);
* ``v0`` — the Projector as it was before this work (kept below as the baseline);
* ``pruned`` — :meth:`Projector.project_mix`, the certified pruned search from the neighbour table.

Peak extra memory of one call at batch 256 x length 128 (all positions real) is measured in a
fresh subprocess (glibc told to return every block >= 64 KiB to the OS, so RSS follows live
memory; the kernel's RSS high-water mark is reset just before the call).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import torch

from benchmarks import _common as C

SIZES = {
    "tiny": dict(vocab=2048, batch=8, n_batches=2, reps=2, mem=(16, 16), identity=256, scaling=False, v0_mem=False,
                 extra=True),
    "quick": dict(vocab=None, batch=32, n_batches=8, reps=4, mem=(256, 128), identity=2048, scaling=False,
                  v0_mem=False, extra=False),
    "full": dict(vocab=None, batch=32, n_batches=16, reps=15, mem=(256, 128), identity=None, scaling=True,
                 v0_mem=True, extra=True),
}


class V0Projector:
    """The Projector before optimisation (verbatim search loop): fp32 ``addmm`` + ``argmin`` in
    chunks of 256, and ``project_positions`` gathering ``emb[select]`` for the whole batch."""

    def __init__(self, table: torch.Tensor, allowed: torch.Tensor, chunk_size: int = 256):
        self.table, self.allowed, self.chunk_size = table, allowed[: table.shape[0]], chunk_size
        norms = (table.float() * table.float()).sum(1)
        self._bias = norms.masked_fill(~self.allowed, float("inf"))

    @torch.no_grad()
    def project(self, emb, exclude=None):
        n = emb.shape[0]
        out = torch.empty(n, dtype=torch.long)
        table_t = self.table.detach().t()
        emb = emb.detach().to(table_t.dtype)
        for start in range(0, n, self.chunk_size):
            stop = min(n, start + self.chunk_size)
            scores = torch.addmm(self._bias.unsqueeze(0), emb[start:stop], table_t, beta=1.0, alpha=-2.0)
            if exclude is not None:
                scores[torch.arange(stop - start), exclude[start:stop]] = float("inf")
            out[start:stop] = scores.argmin(dim=1)
        return out

    def project_positions(self, emb, select, exclude=None):
        return self.project(emb[select], exclude[select] if exclude is not None else None)


def teacher_table(vocab: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The MiniLM-L6 word-embedding table ``[V, 384]`` (optionally its first ``vocab`` rows)
    and the allowed-token mask."""
    from pathlib import Path

    from safetensors import safe_open

    from augpro.models import default_model_dir

    with safe_open(str(Path(default_model_dir()) / "model.safetensors"), "pt") as f:
        key = next(k for k in f.keys() if k.endswith("word_embeddings.weight"))
        table = f.get_tensor(key).float()
    _, allowed = C.token_sets(table.shape[0])
    if vocab:
        table, allowed = table[:vocab].contiguous(), allowed[:vocab].clone()
    return table, allowed


def mixed_batches(table: torch.Tensor, batch: int, n_batches: int):
    """AugPro-Mix inputs for real SST-2 batches: (mixed embeddings, positions, own ids, partner
    ids, lam) per batch, exactly as :class:`~augpro.augment.augpro.AugProMix` builds them."""
    from augpro.augment.interpolate import draw_mix_plan

    special, _ = C.token_sets(table.shape[0])
    ds = C.encoded_rows(batch * n_batches)
    out = []
    for i, b in enumerate(C.batches(ds, batch, n_batches)):
        ids = b["input_ids"].clamp(max=table.shape[0] - 1)
        plan = draw_mix_plan({**b, "input_ids": ids}, special, torch.Generator().manual_seed(i))
        own = table[ids]
        mixed = plan.mix(own)
        sel = plan.mixed
        out.append(dict(emb=mixed, sel=sel, a=ids[sel], b=plan.partner_ids(ids)[sel], lam=plan.lam[sel],
                        n=int(sel.sum()), padded=ids.numel()))
    return out


# --------------------------------------------------------------------------- memory probe
def _rss_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def memory_probe(batch: int, length: int, impl: str, vocab: int | None) -> dict:
    """Peak extra memory (MB) of one ``project_positions`` call on ``[batch, length]`` positions,
    all selected. Meant to run in a fresh process (see :func:`peak_extra_memory`)."""
    import gc

    from augpro.augment.project import Projector

    table, allowed = teacher_table(vocab)
    proj = V0Projector(table, allowed) if impl == "v0" else Projector(table, allowed, screen=impl or None)
    proj.project(table[:8] * 0.5)  # warm-up: thread pool, first-call buffers
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, table.shape[0], (batch, length), generator=g) % table.shape[0]
    emb = 0.6 * table[ids] + 0.4 * table[ids.flip(0)]
    select = torch.ones(batch, length, dtype=torch.bool)
    gc.collect()
    before = _rss_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as fh:  # reset the RSS high-water mark
            fh.write("5")
        method = "VmHWM"
    except OSError:
        method = "unavailable"
    t0 = time.perf_counter()
    proj.project_positions(emb, select)
    seconds = time.perf_counter() - t0
    peak = _rss_kb("VmHWM")
    extra = (peak - before) / 1024 if method == "VmHWM" else float("nan")
    return {"extra_mb": extra, "seconds": seconds, "positions": batch * length, "method": method,
            "input_mb": emb.numel() * 4 / 2**20}


def peak_extra_memory(batch: int, length: int, impl: str = "", vocab: int | None = None) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "benchmarks.projection", "--memory-probe", str(batch), str(length),
           impl or "auto", str(vocab or 0), str(torch.get_num_threads())]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if res.returncode != 0:
        raise RuntimeError(f"memory probe failed: {res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ figure
def run(report: C.Report, mode: str = "quick") -> None:
    from augpro.augment.project import Projector, bf16_screening_available

    cfg = SIZES[mode]
    table, allowed = teacher_table(cfg["vocab"])
    V, d = table.shape
    report.section(f"2. projection (V={V}, d={d}; SST-2 batches of {cfg['batch']}, AugPro-Mix positions; "
                   f"{cfg['reps']} interleaved reps)")
    proj = Projector(table, allowed)
    report.note(f"bf16 screening: {'on' if proj.uses_bf16 else 'off'} "
                f"(native bf16 dot products on this CPU: {bf16_screening_available('cpu')})")
    fp32 = Projector(table, allowed, screen="none")
    v0 = V0Projector(table, allowed)
    t0 = time.perf_counter()
    proj.neighbour_table()  # one-time (cached on disk): the pruned search's table
    report.value("neighbour_table_s", time.perf_counter() - t0, "s (one-time, then cached on disk)")

    work = mixed_batches(table, cfg["batch"], cfg["n_batches"])
    table_t = table.t()
    gathered = [w["emb"][w["sel"]].contiguous() for w in work]
    cur = {"i": 0}

    def w():
        return work[cur["i"]]

    fns = {
        "projection": lambda: proj.project_positions(w()["emb"], w()["sel"]),
        "gemm": lambda: torch.mm(gathered[cur["i"]], table_t),
        "cdist": lambda: torch.cdist(w()["emb"].reshape(-1, d), table).argmin(-1),
        "pruned": lambda: proj.project_mix(w()["a"], w()["b"], w()["lam"]),
    }
    if cfg["extra"]:  # the fp32 path and the old implementation (docs/performance.md)
        fns["fp32"] = lambda: fp32.project_positions(w()["emb"], w()["sel"])
        fns["v0"] = lambda: v0.project_positions(w()["emb"], w()["sel"])
    names = list(fns)
    thr: dict[str, list[float]] = {n: [] for n in names}
    secs: dict[str, list[float]] = {n: [] for n in names}
    for r in range(1 + cfg["reps"]):
        cur["i"] = r % len(work)
        t = C.interleaved({n: fns[n] for n in (names if r % 2 == 0 else names[::-1])}, reps=1, warmup=0)
        if r == 0:
            continue  # warm-up round
        for n in names:
            secs[n].append(t[n][0])
            thr[n].append(work[cur["i"]]["n"] / t[n][0])
    med = {n: C.median(v) for n, v in thr.items()}

    def paired(a: str, b: str) -> float:
        """Median over rounds of the throughput ratio on the same batch."""
        return C.median([x / y for x, y in zip(thr[a], thr[b])])

    n_real = C.median([x["n"] for x in work])
    n_pad = C.median([x["padded"] for x in work])
    report.note(f"positions per batch (median): {n_real:.0f} projected, {n_pad:.0f} padded")
    for n in names:
        report.value(f"positions_per_s[{n}]", med[n], f"(median {C.fmt_s(C.median(secs[n]))}/batch)")
    report.ratio("projection_vs_gemm", paired("projection", "gemm"),
                 f"{med['projection']:.0f} vs {med['gemm']:.0f} positions/s")
    report.ratio("projection_vs_cdist", paired("projection", "cdist"),
                 f"{med['projection']:.0f} vs {med['cdist']:.0f} positions/s")
    if "fp32" in med:
        report.ratio("projection_fp32_vs_gemm", paired("fp32", "gemm"), "the fp32 path (CPUs without bf16)")
        report.ratio("projection_vs_v0", paired("projection", "v0"), "speed-up over the Projector before this work")
    report.ratio("pruned_vs_exact", paired("pruned", "projection"),
                 f"project_mix {med['pruned']:.0f} positions/s")

    # agreement: exact vs the old implementation, pruned vs exact, identity
    same_v0 = total = same_pruned = 0
    proj.stats.update(mix_certified=0, mix_searched=0, fallback=0, searched=0)
    for x in work:
        exact = proj.project_positions(x["emb"], x["sel"])
        same_v0 += int((exact == v0.project_positions(x["emb"], x["sel"])).sum())
        same_pruned += int((exact == proj.project_mix(x["a"], x["b"], x["lam"])).sum())
        total += x["n"]
    report.ratio("exact_agreement_vs_v0", same_v0 / max(1, total), f"{total} positions")
    report.ratio("pruned_agreement", same_pruned / max(1, total),
                 f"{proj.stats['mix_certified']}/{proj.stats['mix_searched']} positions certified without a "
                 f"GEMM, the rest searched exactly")
    report.target("projection_vs_gemm", ">=", 0.8)
    report.target("projection_vs_cdist", ">=", 3)
    report.target("pruned_agreement", ">=", 0.995)
    ids = allowed.nonzero().squeeze(1)
    if cfg["identity"]:
        ids = ids[torch.randperm(len(ids), generator=torch.Generator().manual_seed(0))[: cfg["identity"]]]
    t0 = time.perf_counter()
    mism = int((proj.project(table[ids]) != ids).sum())
    report.value("identity_mismatches", mism, f"of {len(ids)} allowed tokens: P(E[x]) == x "
                                              f"({C.fmt_s(time.perf_counter() - t0)})")

    # memory
    b, length = cfg["mem"]
    m = peak_extra_memory(b, length, vocab=cfg["vocab"])
    report.value("projection_peak_extra_MB", m["extra_mb"],
                 f"MB at batch {b} x length {length}, all positions real ({m['method']}; input itself "
                 f"{m['input_mb']:.0f} MB; {m['seconds']:.1f} s)")
    report.target("projection_peak_extra_MB", "<=", 64, m["extra_mb"])
    if cfg["v0_mem"]:
        m0 = peak_extra_memory(b, length, impl="v0", vocab=cfg["vocab"])
        report.value("projection_peak_extra_MB[v0]", m0["extra_mb"], "MB, the Projector before this work")
    if cfg["scaling"]:
        scaling(report, table, allowed)


def scaling(report: C.Report, table: torch.Tensor, allowed: torch.Tensor) -> None:
    """How a call's time grows with vocabulary size and positions per call (median of 3)."""
    from augpro.augment.project import Projector

    def t_of(f, reps=3):
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
        return C.median(ts)

    g = torch.Generator().manual_seed(1)
    V = table.shape[0]

    def mixes(n, vocab):
        a = torch.randint(1000, vocab, (n,), generator=g)
        b = torch.randint(1000, vocab, (n,), generator=g)
        lam = torch.rand(n, 1, generator=g)
        return lam * table[a] + (1 - lam) * table[b]

    report.note("scaling (us per projected position; bf16 = shipped path, fp32 = fallback path, "
                "mm = plain fp32 GEMM of the same shape):")
    for vocab in (V // 4, V // 2, V):
        t, al = table[:vocab].contiguous(), allowed[:vocab].clone()
        p16, p32 = Projector(t, al), Projector(t, al, screen="none")
        e = mixes(1024, vocab)
        r = [t_of(lambda: p16.project(e)), t_of(lambda: p32.project(e)), t_of(lambda: torch.mm(e, t.t()))]
        report._print(f"SCALE vocab {vocab} n 1024 bf16_us {r[0] / 1024 * 1e6:.0f} fp32_us {r[1] / 1024 * 1e6:.0f} "
                      f"mm_us {r[2] / 1024 * 1e6:.0f}")
    p16, p32 = Projector(table, allowed), Projector(table, allowed, screen="none")
    for n in (32, 128, 512, 2048, 8192):
        e = mixes(n, V)
        r = [t_of(lambda: p16.project(e)), t_of(lambda: p32.project(e)), t_of(lambda: torch.mm(e, table.t()))]
        report._print(f"SCALE positions {n} vocab {V} bf16_us {r[0] / n * 1e6:.0f} fp32_us {r[1] / n * 1e6:.0f} "
                      f"mm_us {r[2] / n * 1e6:.0f}")


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--memory-probe":
    _b, _l, _impl, _vocab, _threads = sys.argv[2:7]
    torch.set_num_threads(int(_threads))
    print(json.dumps(memory_probe(int(_b), int(_l), "" if _impl == "auto" else _impl, int(_vocab) or None)))
