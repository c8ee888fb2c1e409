"""The paired comparisons of a study report, judged by the verdict rule of :mod:`augpro.paired`.

Runs with the same seed in the same column share their training subset, initialisation and data
order, so a comparison is the mean of the per-seed differences with its 95 % Student-t interval
(:func:`augpro.paired.pair`). :func:`paired_table` sets every variant against a reference;
:func:`augpro_table` decides the AugPro claim: per column the best AugPro variant against the best
other augmentation (*ahead*, *behind* or *undecided*), and over the columns the claim's verdict
(:func:`augpro.paired.claim_verdict`). The rule itself lives in :mod:`augpro.paired` alone.
"""

from __future__ import annotations

from augpro.paired import claim_verdict, describe, marked, pair
from augpro.report_rows import (AUGPRO_METHODS, Cell, Row, columns_of, cond_label, ft_reference, group_cells,
                                method_key, method_label, seed_scores, size_name, sort_key, task_key, task_name,
                                variant_label, variants_of)
from augpro.report_tables import markdown_table


def paired_table(rows: list[Row], reference: str) -> list[str]:
    """Every variant's paired difference to a reference in each column (mean [95 % interval]).

    ``reference``: ``"nodata"`` (the same mode without augmentation), ``"ft"`` (FT without
    augmentation) or ``"best"`` (the best other variant of the column by mean). Empty when no
    cell has two seeds paired with its reference.
    """
    cols = columns_of(rows)
    variants = variants_of(rows)
    seeds = seed_scores(rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), (r.task, r.size)))
    cells = group_cells(rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), (r.task, r.size)))
    body, any_pair = [], False
    for v in variants:
        row = [variant_label(*v)]
        for col in cols:
            if (v, col) not in seeds:
                row.append("")
                continue
            if reference == "nodata":
                ref = (v[0], "none", None, 1, v[4])
            elif reference == "ft":
                ref = ft_reference(v, col, seeds)
            else:
                others = [(w, cells[(w, col)]) for w in variants if w != v and (w, col) in cells]
                ref = max(others, key=lambda wc: wc[1].mean)[0] if others else None
            if ref is None or ref == v or (ref, col) not in seeds:
                row.append("")
                continue
            d = pair(seeds[(v, col)], seeds[(ref, col)])
            any_pair |= d.n >= 2
            text = marked(d)
            if reference == "best":
                text += f" vs {variant_label(*ref)}"
            row.append(text)
        if any(row[1:]):
            body.append(row)
    if not any_pair:
        return []
    header = ["method"] + [f"{task_name(t)} n={size_name(s)}" for t, s in cols]
    return markdown_table(header, body)


def conditions_table(rows: list[Row]) -> list[str]:
    """The same method under different conditions (settings that vary besides the cell's own, e.g.
    ``hidden_weight``), paired seed by seed: each later condition against each earlier one, per column.

    A row names only the settings that differ between the two sides. Empty when no such comparison
    has two paired seeds (a one-seed pilot's conditions are not compared).
    """
    cols = columns_of(rows)
    seeds = seed_scores(rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), (r.task, r.size)))
    variants = variants_of(rows)
    body, any_pair = [], False
    for i, v in enumerate(variants):
        for w in variants[:i]:
            if v[:4] != w[:4]:
                continue
            differ = [k for (k, a), (_, b) in zip(v[4], w[4]) if a != b]
            row = [variant_label(*v[:4], ()),
                   cond_label(tuple(kv for kv in v[4] if kv[0] in differ)) + " − "
                   + cond_label(tuple(kv for kv in w[4] if kv[0] in differ))]
            for col in cols:
                if (v, col) not in seeds or (w, col) not in seeds:
                    row.append("")
                    continue
                d = pair(seeds[(v, col)], seeds[(w, col)])
                any_pair |= d.n >= 2
                row.append(marked(d))
            if any(row[2:]):
                body.append(row)
    if not any_pair:
        return []
    header = ["method", "conditions"] + [f"{task_name(t)} n={size_name(s)}" for t, s in cols]
    return markdown_table(header, body, ["---", "---"] + ["---:"] * len(cols))


def augpro_table(rows: list[Row]) -> list[str]:
    """Per task, size and condition: the best AugPro KD variant against the best other augmentation.

    Both sides are picked by their mean (so the comparison favours neither method family), then
    compared seed by seed: the paired difference with its 95 % interval and the outcome of the
    verdict rule (:mod:`augpro.paired`). An undecided outcome says how many seeds would
    settle it at the measured spread.
    """
    kd = [r for r in rows if r.mode == "kd"]
    if not any(r.method in AUGPRO_METHODS for r in kd) or not any(
            r.method not in AUGPRO_METHODS and r.method != "none" for r in kd):
        return []
    cells = group_cells(kd, lambda r: ((r.task, r.size, r.cond), (r.method, r.degree, r.copies)))
    seeds = seed_scores(kd, lambda r: ((r.task, r.size, r.cond), (r.method, r.degree, r.copies)))
    columns = sorted({k for k, _ in cells}, key=lambda c: (task_key(c[0]), sort_key(c[1]), repr(c[2])))

    def best(side: dict[tuple, Cell]) -> tuple[tuple, Cell]:
        order = sorted(side, key=lambda v: (method_key(v[0]), sort_key(v[1]), v[2]))
        v = max(order, key=lambda v: side[v].mean)  # first of equal means in method order
        return v, side[v]

    body, outcomes = [], []
    for col in columns:
        mine = {v: c for (k, v), c in cells.items() if k == col}
        aug = {v: c for v, c in mine.items() if v[0] in AUGPRO_METHODS}
        other = {v: c for v, c in mine.items() if v[0] not in AUGPRO_METHODS and v[0] != "none"}
        if not aug or not other:
            continue
        (va, ca), (vo, co) = best(aug), best(other)
        diff = pair(seeds[(col, va)], seeds[(col, vo)])
        none = [v for v in mine if v[0] == "none"]
        vs_none = pair(seeds[(col, va)], seeds[(col, none[0])]).text() if len(none) == 1 else ""
        outcomes.append(diff.outcome)
        name = f"{task_name(col[0])} n={size_name(col[1])}" + (f" ({cond_label(col[2])})" if col[2] else "")
        body.append([name, mine[none[0]].text() if len(none) == 1 else "",
                     f"{method_label(*va, ())}: {ca.text()}", vs_none,
                     f"{method_label(*vo, ())}: {co.text()}", diff.text(), describe(diff)])
    if not body:
        return []
    tally = "; ".join(f"{k}: {outcomes.count(k)}" for k in ("ahead", "behind", "undecided") if outcomes.count(k))
    return markdown_table(["column", "KD no DA", "best AugPro", "AugPro − KD no DA", "best other augmentation",
                           "AugPro − other (paired)", "outcome"], body,
                          ["---"] + ["---:"] * 5 + ["---"]) + \
        ["", f"Columns: {tally}. Verdict over all columns shown: {claim_verdict(outcomes)} (docs/results.md "
             "says which columns are informative)."]
