"""``augpro compare A.jsonl B.jsonl``: the same cells of two studies, compared seed by seed.

Two grids that share their students' settings and seeds but differ in one thing outside the cell
(the teacher of setting (a) against that of setting (b), say) train paired runs: a seed fixes the
training subset, the student's initialisation and the data order in both. This table matches each
cell (task, size, mode, method, degree, copies and the settings that vary inside either file) of
``A`` with the same cell of ``B`` and gives ``A − B`` over the seeds both ran, with its 95 % t
interval and the outcome of the verdict rule (:mod:`augpro.paired`). Like the study report, the
output depends only on the two files' content.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from augpro.errors import UserError
from augpro.paired import describe, marked, pair
from augpro.report_rows import (Cell, Row, condition_keys, load_rows, seed_scores, size_name, sort_key, task_key,
                                task_name, variant_key, variant_label)
from augpro.report_tables import markdown_table


def _cell_key(r: Row) -> tuple:
    return (r.task, r.size, r.mode, r.method, r.degree, r.copies, r.cond)


def compare_table(a_raw: list[dict[str, Any]], b_raw: list[dict[str, Any]], labels: tuple[str, str]) -> list[str]:
    """Markdown rows: every cell that both result sets ran, ``A − B`` paired over their common seeds.

    Empty when the two share no cell with a common seed.
    """
    keys = sorted(set(condition_keys(a_raw)) | set(condition_keys(b_raw)))
    a_rows = [Row(r, keys) for r in a_raw]
    b_rows = [Row(r, keys) for r in b_raw]
    a_seeds, b_seeds = seed_scores(a_rows, _cell_key), seed_scores(b_rows, _cell_key)
    order = {_cell_key(r): (task_key(r.task), sort_key(r.size), variant_key(r)) for r in a_rows}
    body = []
    for key in sorted(set(a_seeds) & set(b_seeds), key=lambda k: order[k]):
        common = set(a_seeds[key]) & set(b_seeds[key])
        if not common:
            continue
        diff = pair(a_seeds[key], b_seeds[key])
        outcome = "identical scores" if all(d == 0 for d in diff.diffs) else describe(diff)
        task, size, mode, method, degree, copies, cond = key
        a_cell = Cell(a_seeds[key][s] for s in common)
        b_cell = Cell(b_seeds[key][s] for s in common)
        body.append([f"{task_name(task)} n={size_name(size)}", variant_label(mode, method, degree, copies, cond),
                     a_cell.text(), b_cell.text(), marked(diff), outcome])
    if not body:
        return []
    a, b = labels
    return markdown_table(["column", "method", a, b, f"{a} − {b} (paired)", "outcome"], body,
                          ["---", "---", "---:", "---:", "---:", "---"])


def compare(a_path: str, b_path: str, labels: tuple[str, str] | None = None) -> str:
    """The comparison of two ``results.jsonl`` files as markdown (an intro line and the table)."""
    labels = labels or (Path(a_path).parent.name or "A", Path(b_path).parent.name or "B")
    if labels[0] == labels[1]:
        raise UserError(f"the two result sets need different --labels (both are {labels[0]!r})")
    table = compare_table(load_rows(a_path), load_rows(b_path), labels)
    if not table:
        raise UserError(f"{a_path} and {b_path} share no cell with a common seed: nothing to compare")
    command = shlex.join(["augpro", "compare", a_path, b_path, "--labels", *labels])
    intro = (f"`{labels[0]}` ({a_path}) against `{labels[1]}` ({b_path}): dev score ×100, mean ± std over the seeds "
             "both files ran (n=seeds); the paired difference over the seeds both ran, with its 95 % t interval "
             f"(bold: it excludes 0). Regenerate with `{command}`.")
    return "\n".join([f"# {labels[0]} against {labels[1]}", "", intro, ""] + table) + "\n"
