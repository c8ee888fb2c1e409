"""``augpro report RESULTS.jsonl --output DIR``: markdown tables and PNG plots of a study.

Writes ``README.md`` (tables: methods per task and size; paired differences; where AugPro ran, the
best AugPro against the best other augmentation per column, judged by the verdict rule; degree,
copies and best-degree tables for degree sweeps; learning curves; augmentation statistics;
runtime) and the figures the data supports. The work is split by step:

* :mod:`augpro.report_rows`: reading ``results.jsonl``, one :class:`~augpro.report_rows.Row` per
  finished run, labels, and the cells (mean ± std over seeds) the tables and figures group them into;
* :mod:`augpro.report_tables`: the markdown tables;
* :mod:`augpro.report_verdicts`: the paired comparisons and the AugPro claim, judged by the verdict
  rule of :mod:`augpro.paired`;
* :mod:`augpro.report_figures`: the PNG figures;
* :mod:`augpro.report_teachers`: which teacher taught which runs; KD runs taught by another version of
  a retrained teacher are named and left out of the tables and comparisons;
* this module: the ``README.md`` that puts them together, and :func:`write_report`.

Cells are ``mean ± std (n=k)`` over seeds of the dev ``score`` ×100 (std with ddof=1). A figure is
skipped when its x axis would hold a single value. The output depends only on the JSONL's
content (not its line order or path): everything is sorted, figures have fixed sizes and dpi,
PNGs carry no software or date metadata, and the markdown has no timestamps, so a rerun
regenerates the folder byte for byte.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from augpro.errors import UserError
from augpro.report_figures import DPI, FIGURE_PREFIXES, write_figures
from augpro.report_rows import AUGPRO_METHODS, Cell, Row, condition_keys, load_rows, sort_key, tasks_of
from augpro.report_tables import augmentation_table, curves_table, degree_tables, methods_table, runtime_table
from augpro.report_teachers import retrained_teachers_note, split_by_teacher_version, teacher_cells
from augpro.report_verdicts import augpro_table, conditions_table, paired_table

__all__ = ["AUGPRO_METHODS", "DPI", "Cell", "Report", "Row", "load_rows", "write_report"]


class Report:
    """The report of one results file: its rows, the figures written for it, and its markdown."""

    def __init__(self, raw_rows: list[dict[str, Any]]) -> None:
        self.cond_keys = condition_keys(raw_rows)
        self.all_rows = [Row(r, self.cond_keys) for r in raw_rows]
        # KD runs taught by a retrained teacher's other weights are named, not compared (augpro.report_teachers)
        self.rows, self.left_out = split_by_teacher_version(self.all_rows)
        self.tasks = tasks_of(self.rows)
        self.figures: list[tuple[str, str]] = []  # (file name, caption)

    def write(self, out: Path) -> None:
        """The figures, then ``README.md`` (which lists them), into ``out``."""
        self.figures = write_figures(self.rows, out)
        (out / "README.md").write_text(self.markdown(), encoding="utf-8")

    def markdown(self) -> str:
        n_runs = len(self.rows)
        seeds = sorted({r.seed for r in self.rows}, key=sort_key)
        left_out = f" ({len(self.left_out)} more left out: Retrained teachers)" if self.left_out else ""
        lines = ["# Study results", "",
                 f"{n_runs} finished runs{left_out} over {len(self.tasks)} task(s) and {len(seeds)} seed(s). "
                 "Cells: dev score ×100 as `mean ± std (n=seeds)` (std over seeds, ddof=1). The score is "
                 "accuracy (SST-2, RTE), Matthews correlation (CoLA), the mean of F1 and accuracy (MRPC) and of "
                 "Pearson and Spearman (STS-B). Bold: the best mean in its column (methods) or row (degrees). "
                 "Regenerate with `augpro report results.jsonl --output DIR`.", ""]
        if self.cond_keys:
            lines += ["Settings that vary within a task, size and mode besides method, degree, copies and seed: "
                      + ", ".join(f"`{k}`" for k in self.cond_keys) + ".", ""]
        lines += ["## Method comparison", ""]
        if teacher_cells(self.rows):
            lines += ["`teacher`: the fine-tuned teacher the KD students learn from (one per task, size and seed).",
                      ""]
        lines += methods_table(self.rows) + [""]
        lines += retrained_teachers_note(self.all_rows)
        paired_intro = ("Runs with the same seed share their training subset, initialisation and data order, so "
                        "each comparison is the mean of the per-seed differences (dev score ×100) with its 95 % "
                        "Student-t interval over the seeds: `mean [low, high]`. Bold: the interval excludes 0.")
        sections = [("against the same mode without augmentation", paired_table(self.rows, "nodata")),
                    ("against FT without augmentation", paired_table(self.rows, "ft")),
                    ("against the best other method of the column (by mean)", paired_table(self.rows, "best"))]
        if any(t for _, t in sections):
            lines += ["## Paired differences", "", paired_intro, ""]
            for title, table in sections:
                if table:
                    lines += [f"### Each method {title}", ""] + table + [""]
        conds = conditions_table(self.rows)
        if conds:
            lines += ["## Conditions", "",
                      "The same method under two values of the settings that vary besides the cell's own, paired "
                      "seed by seed (left minus right, dev score ×100, 95 % t interval; bold: it excludes 0).", ""]
            lines += conds + [""]
        claim = augpro_table(self.rows)
        if claim:
            lines += ["## AugPro against the other augmentation methods (KD)", "",
                      "Per column, the best AugPro variant against the best other augmentation (both picked by "
                      "mean), compared seed by seed: *ahead* or *behind* when the paired 95 % interval excludes 0, "
                      "else *undecided*, with the number of seeds that would settle it at the measured spread.", ""]
            lines += claim + [""]
        deg = degree_tables(self.rows)
        if deg:
            lines += ["## Degree of augmentation", ""] + deg
        curves = curves_table(self.rows)
        if curves:
            lines += ["## Learning curves", "",
                      "Runs that evaluated after every epoch on the validation split carved from the training rows "
                      "(`val-size`) and on dev. Budgets are read off the validation column only. *Flat from*: the "
                      "first evaluation from which the validation curve, smoothed by a 3-point running mean (each "
                      "evaluation averaged with its neighbours, so that one noisy evaluation moves it little), "
                      "stays within 1 point of the smoothed curve's best. *Best val*: the best single evaluation.",
                      ""]
            lines += curves + [""]
        aug = augmentation_table(self.rows)
        if aug:
            lines += ["## Augmentation statistics", "",
                      "Realised degree: mean share of eligible tokens changed per augmented example. Label-flip "
                      "rate: share of augmented examples on which the teacher predicts another class than on their "
                      "source (KD runs on classification tasks only).", ""]
            lines += aug + [""]
        lines += ["## Runtime", "", "Mean wall-clock seconds per run (training and evaluation, teacher excluded).",
                  ""] + runtime_table(self.rows) + [""]
        if self.figures:
            lines += ["## Figures", ""]
            for name, caption in self.figures:
                lines += [f"### {caption}", "", f"![{caption}]({name})", ""]
        return "\n".join(lines).rstrip("\n") + "\n"


def write_report(results_path: str, output_dir: str) -> None:
    """Write ``README.md`` and the PNG figures for ``results_path`` into ``output_dir``."""
    rows = load_rows(results_path)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--output {out} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    # figures from an earlier report that this data no longer supports would make the folder differ
    for old in sorted(out.glob("*.png")):
        if old.name.startswith(FIGURE_PREFIXES):
            old.unlink()
    Report(rows).write(out)
    print(f"augpro report: {len(rows)} runs -> {out / 'README.md'} and {len(list(out.glob('*.png')))} figure(s)")
