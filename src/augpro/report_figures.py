"""The PNG figures of a study report.

* ``methods_<task>.png``: dev score per method (bars, one per training-set size, std error bars);
* ``paired_<task>.png``: each method's paired difference to FT without augmentation (95 % intervals);
* ``curves_<task>.png``: learning curves of runs that evaluated every epoch;
* ``degree_<task>[_<method>].png``: dev score vs degree, KD and FT on the same axes, one panel
  per training-set size (the semantic-shift study's central figure);
* ``best_degree_<task>[_<method>].png``: the best degree vs training-set size (log x), KD and FT;
* ``copies_<task>[_<method>].png``: dev score vs augmented copies per example, KD and FT (each
  at its best degree; 0 copies = the run without augmentation).

Each figure function writes its PNG and returns ``(file name, caption)``, or None when the data does
not support the figure (its x axis would hold a single value). Figures have fixed sizes and dpi and
PNGs carry no software or date metadata, so a rerun writes the same bytes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from augpro.paired import pair
from augpro.report_rows import (Row, best_degrees, cond_label, degree_cells, degree_groups, ft_reference, group_cells,
                                mode_key, short_labels,
                                seed_scores, size_name, slug, sort_key, task_name, tasks_of, variant_key,
                                variant_label, variants_of)

_MODE_COLORS = {"kd": "tab:blue", "ft": "tab:orange"}
_LINESTYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D", "v", "P"]
#: the file-name prefixes of report figures (``write_report`` deletes stale ones before a rerun)
FIGURE_PREFIXES = ("methods_", "degree_", "best_degree_", "copies_", "paired_", "curves_")
DPI = 100


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    _plt().close(fig)


def _finish(fig, out: Path, name: str, title: str | None = None) -> str:
    """Lay out a drawn figure (with ``title`` over its panels, if given), write it as ``out/name``
    and return ``name``."""
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    _save(fig, out / name)
    return name


def _line_style(i: int) -> dict[str, Any]:
    return {"linestyle": _LINESTYLES[i % len(_LINESTYLES)], "marker": _MARKERS[i % len(_MARKERS)]}


def _decorate_panel(ax, size: int, xlabel: str) -> None:
    """Title, axis labels, grid and legend of one per-size panel of a score plot."""
    ax.set_title(f"n={size_name(size)}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dev score ×100")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


# --------------------------------------------------------------------------- per task


def curves_figure(all_rows: list[Row], out: Path, task: str) -> tuple[str, str] | None:
    """Learning curves of runs that evaluated every epoch: score vs step, validation split solid,
    dev dashed, one panel per training-set size (a pilot that sets the grids' budgets)."""
    rows = [r for r in all_rows if r.task == task and len(r.history) >= 2]
    if not rows:
        return None
    plt = _plt()
    sizes = sorted({r.size for r in rows}, key=sort_key)
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        sel = sorted((r for r in rows if r.size == size), key=lambda r: (variant_key(r), sort_key(r.seed)))
        labels = short_labels({(r.mode, r.method, r.degree, r.copies, r.cond) for r in sel})
        for i, r in enumerate(sel):
            label = labels[(r.mode, r.method, r.degree, r.copies, r.cond)]
            steps = [h["step"] for h in r.history]
            color = f"C{i % 10}"
            if any("val" in h for h in r.history):
                ax.plot(steps, [h.get("val", math.nan) * 100 for h in r.history], color=color, marker="o",
                        markersize=3, label=f"{label}: val")
            if any("dev" in h for h in r.history):
                ax.plot(steps, [h.get("dev", math.nan) * 100 for h in r.history], color=color, linestyle="--",
                        linewidth=1, label=f"{label}: dev")
        ax.set_title(f"n={size_name(size)}")
        ax.set_xlabel("optimizer steps (batch 32)")
        ax.set_ylabel("score ×100")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    name = _finish(fig, out, f"curves_{slug(task)}.png",
                   f"{task_name(task)}: learning curves (evaluated after every epoch)")
    return name, f"{task_name(task)}: learning curves, validation split (solid) and dev (dashed)"


def paired_figure(all_rows: list[Row], out: Path, task: str) -> tuple[str, str] | None:
    """Each variant's paired difference to FT without augmentation, with its 95 % interval as the
    error bar, one panel per training-set size (only where some variant has 2 paired seeds)."""
    rows = [r for r in all_rows if r.task == task]
    sizes = sorted({r.size for r in rows}, key=sort_key)
    seeds = seed_scores(rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), r.size))
    panels = []
    for size in sizes:
        found = []
        for v in variants_of([r for r in rows if r.size == size]):
            ref = ft_reference(v, size, seeds)
            if ref is None or v == ref or (v, size) not in seeds:
                continue
            d = pair(seeds[(v, size)], seeds[(ref, size)])
            if d.n >= 2:
                found.append((v, d))
        if found:
            panels.append((size, found))
    if not panels:
        return None
    plt = _plt()
    labels = short_labels(v for _, found in panels for v, _ in found)
    longest = max(len(line) for text in labels.values() for line in text.splitlines())
    height = max(2.5, 0.35 * max(len(f) for _, f in panels) + 1.2)
    # room for long labels (conditions): about 0.06 inch a character beyond 30
    fig, axes = plt.subplots(1, len(panels), figsize=((4.6 + 0.06 * max(0, longest - 30)) * len(panels), height),
                             squeeze=False)
    for ax, (size, found) in zip(axes[0], panels):
        ys = list(range(len(found)))[::-1]
        means = [d.mean for _, d in found]
        errs = [d.half_width for _, d in found]
        colors = [_MODE_COLORS.get(v[0], "gray") for v, _ in found]
        ax.barh(ys, means, xerr=errs, color=colors, edgecolor="black", linewidth=0.5, capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(ys)
        ax.set_yticklabels([labels[v] for v, _ in found], fontsize=7)
        ax.set_title(f"n={size_name(size)} ({found[0][1].n} seeds)")
        ax.set_xlabel("paired difference to FT, dev ×100 (95 % CI)")
        ax.grid(axis="x", alpha=0.3)
    name = _finish(fig, out, f"paired_{slug(task)}.png",
                   f"{task_name(task)}: each method minus FT without augmentation, same seeds")
    return name, f"{task_name(task)}: paired difference to FT without augmentation (95 % intervals)"


def methods_figure(all_rows: list[Row], out: Path, task: str) -> tuple[str, str] | None:
    rows = [r for r in all_rows if r.task == task]
    variants = variants_of(rows)
    if len(variants) < 2:
        return None
    plt = _plt()
    sizes = sorted({r.size for r in rows}, key=sort_key)
    cells = group_cells(rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), r.size))
    fig, ax = plt.subplots(figsize=(10, 5.5))
    width = 0.8 / len(sizes)
    for j, size in enumerate(sizes):
        xs, ys, es = [], [], []
        for i, v in enumerate(variants):
            c = cells.get((v, size))
            if c is not None:
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(c.mean)
                es.append(c.std)
        ax.bar(xs, ys, width=width, yerr=es, capsize=3, label=f"n={size_name(size)}",
               color=f"C{j % 10}", edgecolor="black", linewidth=0.5)
    lo = min(c.mean - c.std for c in cells.values())
    hi = max(c.mean + c.std for c in cells.values())
    pad = max(1.0, 0.1 * (hi - lo))
    ax.set_ylim(lo - pad, hi + pad)
    ax.set_xticks(range(len(variants)))
    labels = short_labels(variants)
    ax.set_xticklabels([labels[v] for v in variants], rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("dev score ×100 (mean ± std over seeds)")
    ax.set_xlabel("method")
    ax.set_title(f"{task_name(task)}: method comparison")
    ax.legend(title="training-set size", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    name = _finish(fig, out, f"methods_{slug(task)}.png")
    return name, f"{task_name(task)}: dev score per method and training-set size"


# --------------------------------------------------------------------------- degree sweeps


def degree_figure(out: Path, task: str, method: str, rows: list[Row], suffix: str) -> tuple[str, str] | None:
    plt = _plt()
    deg_rows = [r for r in rows if r.method == method]
    sizes = sorted({r.size for r in deg_rows}, key=sort_key)
    cells = group_cells(deg_rows, lambda r: ((r.size, r.mode, r.copies, r.cond), r.degree))
    base = group_cells([r for r in rows if r.method == "none"], lambda r: (r.size, r.mode, r.cond))
    line_keys = sorted({(r.mode, r.copies, r.cond) for r in deg_rows},
                       key=lambda k: (mode_key(k[0]), k[1], repr(k[2])))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes) + 1, 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for i, lk in enumerate(line_keys):
            pts = sorted(((d, c) for (k, d), c in cells.items() if k == (size, *lk)), key=lambda t: sort_key(t[0]))
            if not pts:
                continue
            label = f"{lk[0].upper()} ×{lk[1]}" + (f" {cond_label(lk[2])}" if lk[2] else "")
            ax.errorbar([d for d, _ in pts], [c.mean for _, c in pts], yerr=[c.std for _, c in pts],
                        color=_MODE_COLORS.get(lk[0], f"C{i % 10}"), capsize=3, label=label,
                        **_line_style(sorted({k[1] for k in line_keys}).index(lk[1])))
        for mode in sorted({k[0] for k in line_keys}, key=mode_key):
            for cond in sorted({k[2] for k in line_keys}, key=repr):
                b = base.get((size, mode, cond))
                if b is not None:
                    ax.axhline(b.mean, color=_MODE_COLORS.get(mode, "gray"), linestyle=(0, (1, 3)), linewidth=1.2,
                               label=f"{mode.upper()} no DA" + (f" {cond_label(cond)}" if cond else ""))
        _decorate_panel(ax, size, f"degree (share of tokens changed, {method})")
    name = _finish(fig, out, f"degree_{suffix}.png",
                   f"{task_name(task)}: dev score vs augmentation degree (mean ± std over seeds)")
    return name, f"{task_name(task)}: dev score vs degree ({method}), KD and FT, one panel per training-set size"


def best_degree_figure(out: Path, task: str, method: str, rows: list[Row], suffix: str) -> tuple[str, str] | None:
    deg_rows = [r for r in rows if r.method == method]
    best = best_degrees(degree_cells(deg_rows))
    sizes = sorted({k[3] for k in best if k[3] is not None})
    if len(sizes) < 2:
        return None
    plt = _plt()
    line_keys = sorted({k[:3] for k in best}, key=lambda k: (mode_key(k[0]), k[1], repr(k[2])))
    copies_values = sorted({k[1] for k in line_keys})
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    degrees = sorted({r.degree for r in deg_rows if r.degree is not None})
    for i, lk in enumerate(line_keys):
        pts = [(s, best[(*lk, s)][0]) for s in sizes if (*lk, s) in best]
        label = f"{lk[0].upper()} ×{lk[1]}" + (f" {cond_label(lk[2])}" if lk[2] else "")
        shift = 1.025 ** (i - (len(line_keys) - 1) / 2)  # keep overlapping lines visible
        ax.plot([p[0] * shift for p in pts], [p[1] for p in pts], color=_MODE_COLORS.get(lk[0], f"C{i % 10}"),
                label=label, alpha=0.9, **_line_style(copies_values.index(lk[1])))
    ax.set_yticks(degrees)
    ax.set_ylim(min(degrees) - 0.05, max(degrees) + 0.05)
    ax.set_xscale("log")
    ax.set_xticks(sizes)
    ax.set_xticklabels([size_name(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel("training-set size (rows, log scale; lines nudged apart)")
    ax.set_ylabel(f"best degree ({method})")
    ax.set_title(f"{task_name(task)}: best degree vs training-set size")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    name = _finish(fig, out, f"best_degree_{suffix}.png")
    return name, f"{task_name(task)}: best degree ({method}) vs training-set size, KD and FT"


def copies_figure(out: Path, task: str, method: str, rows: list[Row], suffix: str) -> tuple[str, str] | None:
    deg_rows = [r for r in rows if r.method == method]
    if len({r.copies for r in deg_rows}) < 2:
        return None
    plt = _plt()
    sizes = sorted({r.size for r in deg_rows}, key=sort_key)
    cells = group_cells(deg_rows, lambda r: ((r.size, r.mode, r.cond), r.degree, r.copies))
    base = group_cells([r for r in rows if r.method == "none"], lambda r: (r.size, r.mode, r.cond))
    line_keys = sorted({(r.mode, r.cond) for r in deg_rows}, key=lambda k: (mode_key(k[0]), repr(k[1])))
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes) + 1, 4.5), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        xs_all: set[int] = set()
        for i, lk in enumerate(line_keys):
            mine = {(d, c): cell for (k, d, c), cell in cells.items() if k == (size, *lk)}
            if not mine:
                continue
            by_degree: dict[Any, list[float]] = defaultdict(list)
            for (d, _), cell in mine.items():
                by_degree[d].append(cell.mean)
            best_d = max(sorted(by_degree, key=sort_key), key=lambda d: sum(by_degree[d]) / len(by_degree[d]))
            pts = sorted((c, cell) for (d, c), cell in mine.items() if d == best_d)
            b = base.get((size, *lk))
            xs = ([0] if b else []) + [c for c, _ in pts]
            ys = ([b.mean] if b else []) + [cell.mean for _, cell in pts]
            es = ([b.std] if b else []) + [cell.std for _, cell in pts]
            xs_all.update(xs)
            dlabel = "" if best_d is None else f", degree {best_d:g}"
            ax.errorbar(xs, ys, yerr=es, color=_MODE_COLORS.get(lk[0], f"C{i % 10}"), capsize=3,
                        label=f"{lk[0].upper()}{dlabel}" + (f" {cond_label(lk[1])}" if lk[1] else ""),
                        **_line_style(i))
        ax.set_xticks(sorted(xs_all))
        _decorate_panel(ax, size, "augmented copies per example (0 = no DA)")
    name = _finish(fig, out, f"copies_{suffix}.png",
                   f"{task_name(task)}: dev score vs copies ({method}, each mode at its best degree)")
    return name, f"{task_name(task)}: dev score vs copies per example ({method}), KD and FT"


# --------------------------------------------------------------------------- all


def write_figures(rows: list[Row], out: Path) -> list[tuple[str, str]]:
    """Write every figure the rows support into ``out``; their (file name, caption) in report order."""
    figures: list[tuple[str, str] | None] = []
    plt = _plt()
    with plt.style.context("default"):
        for task in tasks_of(rows):
            figures.append(methods_figure(rows, out, task))
            figures.append(paired_figure(rows, out, task))
            figures.append(curves_figure(rows, out, task))
        for task, method, task_rows, suffix in degree_groups(rows):
            figures.append(degree_figure(out, task, method, task_rows, suffix))
            figures.append(best_degree_figure(out, task, method, task_rows, suffix))
            figures.append(copies_figure(out, task, method, task_rows, suffix))
    return [f for f in figures if f is not None]
