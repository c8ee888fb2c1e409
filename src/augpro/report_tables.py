"""The markdown tables of a study report (all but the paired comparisons, :mod:`augpro.report_verdicts`).

Cells are ``mean ± std (n=k)`` over seeds of the dev ``score`` ×100 (std with ddof=1); bold marks
the best mean of a column (methods) or row (degrees). Each function takes the report's rows
(:class:`augpro.report_rows.Row`) and returns the table's markdown lines (empty when the data holds
nothing for it).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from augpro.paired import describe, pair
from augpro.report_rows import (Cell, Row, best_degrees, columns_of, cond_label, degree_cells, degree_groups,
                                group_cells, mean_or_none, mode_key, seed_scores, size_name, sort_key, task_key,
                                task_name, variant_key, variant_label, variants_of)
from augpro.report_teachers import teacher_cells


# --------------------------------------------------------------------------- markdown


def markdown_table(header: list[str], body: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def bold_best(cells: dict[Any, Cell], digits: int = 1) -> dict[Any, str]:
    """Cell texts with every cell whose rounded mean equals the best rounded mean in bold."""
    if not cells:
        return {}
    best = max(round(c.mean, digits) for c in cells.values())
    return {k: (f"**{c.text(digits)}**" if round(c.mean, digits) == best else c.text(digits))
            for k, c in cells.items()}


# --------------------------------------------------------------------------- method tables


def methods_table(rows: list[Row]) -> list[str]:
    cols = columns_of(rows)
    variants = variants_of(rows)
    cells = group_cells(rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), (r.task, r.size)))
    texts: dict[Any, str] = {}
    for col in cols:
        texts.update(bold_best({k: c for k, c in cells.items() if k[1] == col}))
    header = ["method"] + [f"{task_name(t)} n={size_name(s)}" for t, s in cols]
    body = []
    teacher = teacher_cells(rows)
    if teacher:
        body.append(["teacher"] + [teacher[c].text() if c in teacher else "" for c in cols])
    for v in variants:
        body.append([variant_label(*v)] + [texts.get((v, c), "") for c in cols])
    return markdown_table(header, body)


def runtime_table(rows: list[Row]) -> list[str]:
    cols = columns_of(rows)
    variants = variants_of(rows)
    times: dict[Any, list[float]] = defaultdict(list)
    for r in rows:
        if isinstance(r.runtime, (int, float)):
            times[((r.mode, r.method, r.degree, r.copies, r.cond), (r.task, r.size))].append(float(r.runtime))
    header = ["method"] + [f"{task_name(t)} n={size_name(s)}" for t, s in cols]
    body = [[variant_label(*v)] + [f"{mean_or_none(times[(v, c)]):.0f}" if times.get((v, c)) else "" for c in cols]
            for v in variants]
    return markdown_table(header, body)


def augmentation_table(rows: list[Row]) -> list[str]:
    variants = [v for v in variants_of(rows) if v[1] != "none"]
    if not variants:
        return []
    body = []
    for v in variants:
        sel = [r for r in rows if (r.mode, r.method, r.degree, r.copies, r.cond) == v]
        deg = mean_or_none([r.realised for r in sel])
        flips = mean_or_none([r.flips for r in sel])
        body.append([variant_label(*v), "–" if deg is None else f"{deg:.3f}",
                     "–" if flips is None else f"{flips:.3f}", str(len(sel))])
    return markdown_table(["method", "realised degree", "label-flip rate", "runs"], body)


def running_mean(values: list[float], width: int = 3) -> list[float]:
    """Centred running mean: each value averaged with its ``width // 2`` neighbours on either side
    (fewer at the two ends, where the window is cut off)."""
    half = width // 2
    return [sum(values[max(0, i - half):i + half + 1]) / len(values[max(0, i - half):i + half + 1])
            for i in range(len(values))]


def curves_table(all_rows: list[Row]) -> list[str]:
    """For runs that evaluated every epoch: where the validation curve flattens.

    *Flat from* is read off the validation curve smoothed by a 3-point running mean (each
    evaluation averaged with the one before and the one after; the first and last with their one
    neighbour): the first evaluation whose smoothed score is within 1 point (×100) of the smoothed
    curve's best and stays so at every later evaluation, so training past it gains less than a
    point. Smoothing keeps a single noisy evaluation (a dip or spike of a couple of points, against
    a validation standard error of about a point) from moving it: averaged with its neighbours,
    such an evaluation shifts the smoothed curve by a third of its size. On a sharp rise the
    smoothed curve can flatten one evaluation later than the raw one. "–" when the smoothed curve
    ends more than a point below its best. *Best val* is the best single evaluation (unsmoothed).
    """
    rows = [r for r in all_rows if len(r.history) >= 2 and any("val" in h for h in r.history)]
    if not rows:
        return []
    body = []
    for r in sorted(rows, key=lambda r: (task_key(r.task), sort_key(r.size), variant_key(r), sort_key(r.seed))):
        vals = [(h["step"], h["epoch"], h["val"] * 100) for h in r.history if "val" in h]
        best = max(v for _, _, v in vals)
        smooth = running_mean([v for _, _, v in vals])
        top = max(smooth)
        # 1e-9: a smoothed score exactly 1 point below the top counts as within it despite float rounding
        flat = next((i for i in range(len(smooth)) if all(v >= top - 1.0 - 1e-9 for v in smooth[i:])), None)
        flat_text = "–" if flat is None else f"{vals[flat][0]} (epoch {vals[flat][1]:g})"
        body.append([task_name(r.task), size_name(r.size), variant_label(r.mode, r.method, r.degree, r.copies,
                                                                          r.cond),
                     str(r.seed), f"{best:.1f}", flat_text, f"{vals[-1][0]}",
                     "–" if r.val_score is None else f"{r.val_score:.1f}", f"{r.score:.1f}"])
    return markdown_table(["task", "n", "method", "seed", "best val", "flat from (within 1 point)", "steps",
                           "final val", "final dev"], body, ["---", "---:", "---", "---:"] + ["---:"] * 5)


# --------------------------------------------------------------------------- degree tables


def degree_tables(all_rows: list[Row]) -> list[str]:
    lines: list[str] = []
    for task, method, rows, _ in degree_groups(all_rows):
        deg_rows = [r for r in rows if r.method == method]
        degrees = sorted({r.degree for r in deg_rows}, key=sort_key)
        has_none = any(r.method == "none" for r in rows)
        keys = sorted({(r.size, r.mode, r.copies, r.cond) for r in deg_rows},
                      key=lambda k: (sort_key(k[0]), mode_key(k[1]), k[2], repr(k[3])))
        cells = group_cells(deg_rows, lambda r: ((r.size, r.mode, r.copies, r.cond), r.degree))
        base = group_cells([r for r in rows if r.method == "none"], lambda r: (r.size, r.mode, r.cond))
        header = ["n", "mode", "copies"] + (["no DA"] if has_none else []) + \
            [f"degree {d:g}" for d in degrees] + ["best degree"]
        body = []
        for k in keys:
            row_cells = {d: cells[(k, d)] for d in degrees if (k, d) in cells}
            texts = bold_best(row_cells)
            best = max(row_cells, key=lambda d: (row_cells[d].mean, -sort_key(d)[1]))
            label = k[1].upper() + (f" ({cond_label(k[3])})" if k[3] else "")
            b = base.get((k[0], k[1], k[3]))
            body.append([size_name(k[0]), label, str(k[2])] + ([b.text() if b else ""] if has_none else [])
                        + [texts.get(d, "") for d in degrees] + [f"{best:g}"])
        lines += [f"### {task_name(task)}: {method}, dev score vs degree", ""]
        default = sum(r.task == task and r.method == method and r.degree is None for r in all_rows)
        if default:
            lines += [f"{default} {method} run(s) at the method's default degree (none given) are not part of this "
                      "sweep; the method comparison lists them.", ""]
        lines += markdown_table(header, body, ["---:", "---", "---:"] + ["---:"] * (len(header) - 3))
        lines += [""]
        lines += best_degree_table(task, method, deg_rows)
        lines += copies_gain_table(task, method, deg_rows)
    return lines


def copies_gain_table(task: str, method: str, deg_rows: list[Row]) -> list[str]:
    """Per mode and size: how the most copies compare with one copy, over the degrees above 0
    that both were run at (mean difference of the cell means, and at how many degrees it is
    positive). Empty when only one copies value was run."""
    copies = sorted({r.copies for r in deg_rows})
    if len(copies) < 2 or copies[0] != 1:
        return []
    most = copies[-1]
    cells = group_cells(deg_rows, lambda r: ((r.mode, r.cond, r.size), r.copies, r.degree))
    seeds = seed_scores(deg_rows, lambda r: ((r.mode, r.cond, r.size), r.copies, r.degree))
    sizes = sorted({r.size for r in deg_rows}, key=sort_key)
    keys = sorted({(r.mode, r.cond) for r in deg_rows}, key=lambda k: (mode_key(k[0]), repr(k[1])))
    body = []
    for mode, cond in keys:
        row = [mode.upper() + (f" ({cond_label(cond)})" if cond else "")]
        for size in sizes:
            k = (mode, cond, size)
            pairs = [pair(seeds[(k, most, d)], seeds[(k, 1, d)])
                     for d in sorted({r.degree for r in deg_rows}, key=sort_key)
                     if d is not None and d > 0 and (k, 1, d) in cells and (k, most, d) in cells]
            if not pairs:
                row.append("")
                continue
            diffs = [p.mean for p in pairs]
            ahead = sum(p.outcome == "ahead" for p in pairs)
            behind = sum(p.outcome == "behind" for p in pairs)
            text = f"{sum(diffs) / len(diffs):+.1f} ({sum(x > 0 for x in diffs)}/{len(diffs)}"
            marks = [f"{ahead} ahead"] * bool(ahead) + [f"{behind} behind"] * bool(behind)
            row.append(text + (f"; {', '.join(marks)})" if marks else ")"))
        body.append(row)
    return [f"{most} copies vs 1, {task_name(task)}, {method}: mean paired difference of the dev score ×100 over "
            "the degrees above 0, at how many of them the extra copies scored higher, and at how many the "
            "paired 95 % interval lies above 0 (*ahead*) or below 0 (*behind*):", ""] + \
        markdown_table(["mode"] + [f"n={size_name(s)}" for s in sizes], body) + [""]


def best_degree_table(task: str, method: str, deg_rows: list[Row]) -> list[str]:
    cells = degree_cells(deg_rows)
    seeds = seed_scores(deg_rows, lambda r: ((r.mode, r.copies, r.cond, r.size), r.degree))
    best = best_degrees(cells)
    sizes = sorted({k[3] for k in best}, key=sort_key)
    lines_keys = sorted({k[:3] for k in best}, key=lambda k: (mode_key(k[0]), k[1], repr(k[2])))
    header = ["mode", "copies"] + [f"n={size_name(s)}" for s in sizes]

    def text(key: tuple) -> str:
        degree, cell = best[key]
        others = sorted(((d, c) for (k, d), c in cells.items() if k == key and d != degree),
                        key=lambda dc: (-dc[1].mean, sort_key(dc[0])))
        if not others:
            return f"{degree:g} ({cell.mean:.1f})"
        leads = []
        for i, (d2, _) in enumerate(others):
            if i and not d2:
                continue  # past the runner-up, only the other degrees above 0 (claim 3's comparisons)
            lead = pair(seeds[(key, degree)], seeds[(key, d2)])
            mark = "" if lead.n < 2 else f", {describe(lead)}"
            leads.append(f"{lead.text()} over {d2:g}{mark}")
        return f"{degree:g} ({cell.mean:.1f}; {'; '.join(leads)})"

    body = []
    for lk in lines_keys:
        label = lk[0].upper() + (f" ({cond_label(lk[2])})" if lk[2] else "")
        body.append([label, str(lk[1])] + [text((*lk, s)) if (*lk, s) in best else "" for s in sizes])
    return [f"Best degree per training-set size, {task_name(task)}, {method}: its mean score, its paired lead "
            "over the runner-up degree and then over each other degree above 0 (mean [95 % interval] over seeds), "
            "and whether each lead is *ahead* (the interval above 0) or undecided (with the seeds that would "
            "settle it at this spread):", ""] + \
        markdown_table(header, body, ["---", "---:"] + ["---:"] * len(sizes)) + [""]
