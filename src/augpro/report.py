"""``augpro report RESULTS.jsonl --output DIR``: markdown tables and PNG plots of a study.

Writes ``README.md`` (tables: methods per task and size; where AugPro ran, the best AugPro against
the best other augmentation per column, judged by the verdict rule; degree, copies and best-degree
tables for degree sweeps; augmentation statistics; runtime) and the figures the data supports:

* ``methods_<task>.png``: dev score per method (bars, one per training-set size, std error bars);
* ``degree_<task>[_<method>].png``: dev score vs degree, KD and FT on the same axes, one panel
  per training-set size (the semantic-shift study's central figure);
* ``best_degree_<task>[_<method>].png``: the best degree vs training-set size (log x), KD and FT;
* ``copies_<task>[_<method>].png``: dev score vs augmented copies per example, KD and FT (each
  at its best degree; 0 copies = the run without augmentation).

Cells are ``mean ± std (n=k)`` over seeds of the dev ``score`` ×100 (std with ddof=1). A figure is
skipped when its x axis would hold a single value. The output depends only on the JSONL's
content (not its line order or path): everything is sorted, figures have fixed sizes and dpi,
PNGs carry no software or date metadata, and the markdown has no timestamps, so a rerun
regenerates the folder byte for byte.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from augpro.errors import UserError
from augpro.paired import Paired, claim_verdict, describe, pair

#: settings that never define a table cell (seed is averaged over; the rest are bookkeeping)
_NOT_CONDITIONS = {"seed", "output_dir", "teacher", "data_dir", "progress", "threads", "resume", "cache",
                   "save_checkpoints", "eval_every_epoch", "task", "train_size", "mode", "augment", "degree",
                   "copies", "extra"}
_TASK_ORDER = ["sst2", "mrpc", "rte", "cola", "stsb", "qnli", "qqp", "mnli", "wnli"]
_TASK_NAMES = {"sst2": "SST-2", "mrpc": "MRPC", "rte": "RTE", "cola": "CoLA", "stsb": "STS-B", "qnli": "QNLI",
               "qqp": "QQP", "mnli": "MNLI", "wnli": "WNLI"}
_METHOD_ORDER = ["none", "knn", "mask", "random", "synonym", "eda", "mixkd", "fgsm", "augpro-mix", "augpro-fgsm"]
_MODE_ORDER = ["kd", "ft"]
_MODE_COLORS = {"kd": "tab:blue", "ft": "tab:orange"}
_LINESTYLES = ["-", "--", ":", "-."]
_MARKERS = ["o", "s", "^", "D", "v", "P"]
_FIG_PATTERNS = ("methods_", "degree_", "best_degree_", "copies_", "paired_", "curves_")
#: the AugPro methods (projected augmentation); the AugPro table sets them against every other one
AUGPRO_METHODS = ("augpro-mix", "augpro-fgsm")
#: the paired-seed verdict rule (docs/results.md): an outcome is "ahead"/"behind" when the 95 %
#: t interval of the per-seed differences excludes 0; see :mod:`augpro.paired`
DPI = 100


# --------------------------------------------------------------------------- reading



def _decorate_panel(ax, size: int, xlabel: str) -> None:
    """Title, axis labels, grid and legend of one per-size panel of a score plot."""
    ax.set_title(f"n={_size_name(size)}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("dev score ×100")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)

def load_rows(results_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Finished runs with a numeric score, first line per run_id, sorted by run_id."""
    from augpro.study import read_results

    path = Path(results_path)
    if not path.is_file():
        raise UserError(f"results file {path} not found")
    rows = [r for r in read_results(path) if isinstance(r.get("score"), (int, float))
            and math.isfinite(r["score"]) and isinstance(r.get("settings"), dict)]
    if not rows:
        raise UserError(f"{path} holds no finished runs")
    return sorted(rows, key=lambda r: str(r["run_id"]))


def _sort_key(value: Any) -> tuple:
    """Total order over None, numbers and strings (None first)."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, (int, float)):
        return (1, float(value), "")
    return (2, 0, str(value))


def _task_key(task: str) -> tuple:
    return (_TASK_ORDER.index(task) if task in _TASK_ORDER else len(_TASK_ORDER), task)


def _method_key(method: str) -> tuple:
    return (_METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER), method)


def _mode_key(mode: str) -> tuple:
    return (_MODE_ORDER.index(mode) if mode in _MODE_ORDER else len(_MODE_ORDER), mode)


def _task_name(task: str) -> str:
    return _TASK_NAMES.get(task, task)


def _size_name(size: Any) -> str:
    return "all" if size is None else f"{size:,}"


def _num(value: Any) -> str:
    return "–" if value is None else f"{value:g}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-") or "x"


def _condition_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Settings (beyond task/size/mode/method/degree/copies/seed) that vary among the runs of one
    task and training-set size (a setting chosen per task, like ``max_length``, is not one)."""
    values: dict[tuple, set] = defaultdict(set)
    for r in rows:
        s = r["settings"]
        group = (repr(r.get("task", s.get("task"))), repr(r.get("train_size", s.get("train_size"))))
        for k, v in s.items():
            if k not in _NOT_CONDITIONS:
                values[(k, group)].add(repr(v))
    return sorted({k for (k, _), vs in values.items() if len(vs) > 1})


class _Row:
    """One run, flattened."""

    def __init__(self, raw: dict[str, Any], cond_keys: list[str]) -> None:
        s = raw["settings"]
        self.task = str(raw.get("task") or s.get("task") or "custom")
        self.size = raw.get("train_size", s.get("train_size"))
        self.mode = str(raw.get("mode") or s.get("mode"))
        self.method = str(raw.get("augment") or s.get("augment") or "none")
        self.degree = raw.get("degree", s.get("degree"))
        self.copies = int(raw.get("copies", s.get("copies", 1)) or 1)
        self.seed = raw.get("seed", s.get("seed"))
        self.score = float(raw["score"]) * 100
        self.cond = tuple((k, s.get(k)) for k in cond_keys)
        self.realised = raw.get("realised_degree")
        self.flips = raw.get("label_flip_rate")
        self.runtime = raw.get("runtime_s")
        self.teacher_id = raw.get("teacher_id")
        tdev = raw.get("teacher_dev") or {}
        self.teacher_score = float(tdev["score"]) * 100 if isinstance(tdev.get("score"), (int, float)) else None
        self.history = [h for h in (raw.get("history") or []) if isinstance(h, dict) and "step" in h]
        val = raw.get("val") or {}
        self.val_score = float(val["score"]) * 100 if isinstance(val.get("score"), (int, float)) else None


def _cond_label(cond: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in cond)


def _variant_key(r: _Row) -> tuple:
    return (_mode_key(r.mode), _method_key(r.method), _sort_key(r.degree), r.copies,
            tuple(_sort_key(v) for _, v in r.cond))


def _variant_label(mode: str, method: str, degree: Any, copies: int, cond: tuple) -> str:
    return f"{mode.upper()} {_method_label(method, degree, copies, cond)}"


def _method_label(method: str, degree: Any, copies: int, cond: tuple) -> str:
    text = method
    bits = []
    if degree is not None:
        bits.append(f"degree {degree:g}")
    if copies != 1:
        bits.append(f"×{copies}")
    if cond:
        bits.append(_cond_label(cond))
    return text + (f" ({', '.join(bits)})" if bits else "")


# --------------------------------------------------------------------------- statistics


class Cell:
    def __init__(self, values: Iterable[float]) -> None:
        self.values = sorted(values)
        self.n = len(self.values)
        self.mean = sum(self.values) / self.n if self.n else float("nan")
        if self.n >= 2:
            var = sum((v - self.mean) ** 2 for v in self.values) / (self.n - 1)
            self.std = math.sqrt(var)
        else:
            self.std = 0.0

    def text(self, digits: int = 1) -> str:
        if self.n >= 2:
            return f"{self.mean:.{digits}f} ± {self.std:.{digits}f} (n={self.n})"
        return f"{self.mean:.{digits}f} (n={self.n})"


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _markdown_table(header: list[str], body: list[list[str]], align: list[str] | None = None) -> list[str]:
    align = align or ["---"] + ["---:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return lines


def _bold_best(cells: dict[Any, Cell], digits: int = 1) -> dict[Any, str]:
    """Cell texts with every cell whose rounded mean equals the best rounded mean in bold."""
    if not cells:
        return {}
    best = max(round(c.mean, digits) for c in cells.values())
    return {k: (f"**{c.text(digits)}**" if round(c.mean, digits) == best else c.text(digits))
            for k, c in cells.items()}


_OUTCOME_WORDS = {"ahead": "ahead", "behind": "behind", "undecided": "undecided"}


# --------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.savefig(path, dpi=DPI, format="png", metadata={"Software": None})
    _plt().close(fig)


def _line_style(i: int) -> dict[str, Any]:
    return {"linestyle": _LINESTYLES[i % len(_LINESTYLES)], "marker": _MARKERS[i % len(_MARKERS)]}


# --------------------------------------------------------------------------- report


class Report:
    def __init__(self, raw_rows: list[dict[str, Any]]) -> None:
        self.cond_keys = _condition_keys(raw_rows)
        self.rows = [_Row(r, self.cond_keys) for r in raw_rows]
        self.tasks = sorted({r.task for r in self.rows}, key=_task_key)
        self.figures: list[tuple[str, str]] = []  # (file name, caption)

    # ---- selections
    def _cells(self, rows: Iterable[_Row], key) -> dict[Any, Cell]:
        groups: dict[Any, list[float]] = defaultdict(list)
        for r in rows:
            groups[key(r)].append(r.score)
        return {k: Cell(v) for k, v in groups.items()}

    def _seed_scores(self, rows: Iterable[_Row], key) -> dict[Any, dict[Any, float]]:
        """key -> {seed: score}: the per-seed scores that paired comparisons match up."""
        out: dict[Any, dict[Any, float]] = defaultdict(dict)
        for r in rows:
            out[key(r)][r.seed] = r.score
        return dict(out)

    def columns(self) -> list[tuple[str, Any]]:
        return sorted({(r.task, r.size) for r in self.rows}, key=lambda c: (_task_key(c[0]), _sort_key(c[1])))

    def variants(self, rows: Iterable[_Row]) -> list[tuple]:
        seen = {}
        for r in rows:
            seen.setdefault((r.mode, r.method, r.degree, r.copies, r.cond), _variant_key(r))
        return sorted(seen, key=lambda v: seen[v])

    # ---- tables
    def methods_table(self) -> list[str]:
        cols = self.columns()
        variants = self.variants(self.rows)
        cells = self._cells(self.rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), (r.task, r.size)))
        texts: dict[Any, str] = {}
        for col in cols:
            texts.update(_bold_best({k: c for k, c in cells.items() if k[1] == col}))
        header = ["method"] + [f"{_task_name(t)} n={_size_name(s)}" for t, s in cols]
        body = []
        teacher = self.teacher_cells()
        if teacher:
            body.append(["teacher"] + [teacher[c].text() if c in teacher else "" for c in cols])
        for v in variants:
            body.append([_variant_label(*v)] + [texts.get((v, c), "") for c in cols])
        return _markdown_table(header, body)

    def augpro_table(self) -> list[str]:
        """Per task, size and condition: the best AugPro KD variant against the best other augmentation.

        Both sides are picked by their mean (so the comparison favours neither method family), then
        compared seed by seed: the paired difference with its 95 % interval and the outcome of the
        verdict rule (:mod:`augpro.paired`). An undecided outcome says how many seeds would
        settle it at the measured spread.
        """
        kd = [r for r in self.rows if r.mode == "kd"]
        if not any(r.method in AUGPRO_METHODS for r in kd) or not any(
                r.method not in AUGPRO_METHODS and r.method != "none" for r in kd):
            return []
        cells = self._cells(kd, lambda r: ((r.task, r.size, r.cond), (r.method, r.degree, r.copies)))
        seeds = self._seed_scores(kd, lambda r: ((r.task, r.size, r.cond), (r.method, r.degree, r.copies)))
        columns = sorted({k for k, _ in cells}, key=lambda c: (_task_key(c[0]), _sort_key(c[1]), repr(c[2])))

        def best(side: dict[tuple, Cell]) -> tuple[tuple, Cell]:
            order = sorted(side, key=lambda v: (_method_key(v[0]), _sort_key(v[1]), v[2]))
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
            name = f"{_task_name(col[0])} n={_size_name(col[1])}" + (f" ({_cond_label(col[2])})" if col[2] else "")
            body.append([name, mine[none[0]].text() if len(none) == 1 else "",
                         f"{_method_label(*va, ())}: {ca.text()}", vs_none,
                         f"{_method_label(*vo, ())}: {co.text()}", diff.text(), describe(diff)])
        if not body:
            return []
        tally = "; ".join(f"{k}: {outcomes.count(k)}" for k in ("ahead", "behind", "undecided") if outcomes.count(k))
        return _markdown_table(["column", "KD no DA", "best AugPro", "AugPro − KD no DA", "best other augmentation",
                                "AugPro − other (paired)", "outcome"], body,
                               ["---"] + ["---:"] * 5 + ["---"]) + \
            ["", f"Columns: {tally}. Verdict over all columns shown: {claim_verdict(outcomes)} (docs/results.md "
                 "says which columns are informative)."]

    def paired_table(self, reference: str) -> list[str]:
        """Every variant's paired difference to a reference in each column (mean [95 % interval]).

        ``reference``: ``"nodata"`` (the same mode without augmentation), ``"ft"`` (FT without
        augmentation) or ``"best"`` (the best other variant of the column by mean). Empty when no
        cell has two seeds paired with its reference.
        """
        cols = self.columns()
        variants = self.variants(self.rows)
        seeds = self._seed_scores(self.rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond),
                                                        (r.task, r.size)))
        cells = self._cells(self.rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), (r.task, r.size)))
        body, any_pair = [], False
        for v in variants:
            row = [_variant_label(*v)]
            for col in cols:
                if (v, col) not in seeds:
                    row.append("")
                    continue
                if reference == "nodata":
                    ref = (v[0], "none", None, 1, v[4])
                elif reference == "ft":
                    ref = ("ft", "none", None, 1, v[4])
                else:
                    others = [(w, cells[(w, col)]) for w in variants if w != v and (w, col) in cells]
                    ref = max(others, key=lambda wc: wc[1].mean)[0] if others else None
                if ref is None or ref == v or (ref, col) not in seeds:
                    row.append("")
                    continue
                d = pair(seeds[(v, col)], seeds[(ref, col)])
                any_pair |= d.n >= 2
                text = d.text()
                if d.outcome != "undecided":
                    text = f"**{text}**"
                if reference == "best":
                    text += f" vs {_variant_label(*ref)}"
                row.append(text)
            if any(row[1:]):
                body.append(row)
        if not any_pair:
            return []
        header = ["method"] + [f"{_task_name(t)} n={_size_name(s)}" for t, s in cols]
        return _markdown_table(header, body)

    def curves_table(self) -> list[str]:
        """For runs that evaluated every epoch: where the validation curve flattens.

        *Flat from* is the first evaluation whose validation score is within 1 point (×100) of the
        run's best, and stays so at every later evaluation: training past it gains less than a point.
        """
        rows = [r for r in self.rows if len(r.history) >= 2 and any("val" in h for h in r.history)]
        if not rows:
            return []
        body = []
        for r in sorted(rows, key=lambda r: (_task_key(r.task), _sort_key(r.size), _variant_key(r), _sort_key(r.seed))):
            vals = [(h["step"], h["epoch"], h["val"] * 100) for h in r.history if "val" in h]
            best = max(v for _, _, v in vals)
            flat = next(i for i in range(len(vals)) if all(v >= best - 1.0 for _, _, v in vals[i:]))
            step, epoch, _ = vals[flat]
            body.append([_task_name(r.task), _size_name(r.size), _variant_label(r.mode, r.method, r.degree, r.copies,
                                                                                r.cond),
                         str(r.seed), f"{best:.1f}", f"{step} (epoch {epoch:g})", f"{vals[-1][0]}",
                         "–" if r.val_score is None else f"{r.val_score:.1f}", f"{r.score:.1f}"])
        return _markdown_table(["task", "n", "method", "seed", "best val", "flat from (within 1 point)", "steps",
                                "final val", "final dev"], body, ["---", "---:", "---", "---:"] + ["---:"] * 5)

    def teacher_cells(self) -> dict[tuple, Cell]:
        seen: dict[tuple, float] = {}
        for r in self.rows:
            if r.teacher_score is not None:
                seen.setdefault((r.task, r.size, r.teacher_id or r.seed), r.teacher_score)
        groups: dict[tuple, list[float]] = defaultdict(list)
        for (task, size, _), score in sorted(seen.items(), key=lambda kv: repr(kv[0])):
            groups[(task, size)].append(score)
        return {k: Cell(v) for k, v in groups.items()}

    def runtime_table(self) -> list[str]:
        cols = self.columns()
        variants = self.variants(self.rows)
        times: dict[Any, list[float]] = defaultdict(list)
        for r in self.rows:
            if isinstance(r.runtime, (int, float)):
                times[((r.mode, r.method, r.degree, r.copies, r.cond), (r.task, r.size))].append(float(r.runtime))
        header = ["method"] + [f"{_task_name(t)} n={_size_name(s)}" for t, s in cols]
        body = [[_variant_label(*v)] + [f"{_mean(times[(v, c)]):.0f}" if times.get((v, c)) else "" for c in cols]
                for v in variants]
        return _markdown_table(header, body)

    def augmentation_table(self) -> list[str]:
        variants = [v for v in self.variants(self.rows) if v[1] != "none"]
        if not variants:
            return []
        body = []
        for v in variants:
            sel = [r for r in self.rows if (r.mode, r.method, r.degree, r.copies, r.cond) == v]
            deg = _mean([r.realised for r in sel])
            flips = _mean([r.flips for r in sel])
            body.append([_variant_label(*v), "–" if deg is None else f"{deg:.3f}",
                         "–" if flips is None else f"{flips:.3f}", str(len(sel))])
        return _markdown_table(["method", "realised degree", "label-flip rate", "runs"], body)

    def degree_groups(self) -> list[tuple[str, str, list[_Row], str]]:
        """(task, method, rows of that task/method plus its no-augmentation runs, file suffix)."""
        out = []
        for task in self.tasks:
            trows = [r for r in self.rows if r.task == task]
            methods = sorted({r.method for r in trows if r.degree is not None}, key=_method_key)
            methods = [m for m in methods if len({r.degree for r in trows if r.method == m}) >= 2]
            for m in methods:
                suffix = _slug(task) + ("" if len(methods) == 1 else f"_{_slug(m)}")
                out.append((task, m, [r for r in trows if r.method in (m, "none")], suffix))
        return out

    def degree_tables(self) -> list[str]:
        lines: list[str] = []
        for task, method, rows, _ in self.degree_groups():
            deg_rows = [r for r in rows if r.method == method]
            degrees = sorted({r.degree for r in deg_rows}, key=_sort_key)
            has_none = any(r.method == "none" for r in rows)
            keys = sorted({(r.size, r.mode, r.copies, r.cond) for r in deg_rows},
                          key=lambda k: (_sort_key(k[0]), _mode_key(k[1]), k[2], repr(k[3])))
            cells = self._cells(deg_rows, lambda r: ((r.size, r.mode, r.copies, r.cond), r.degree))
            base = self._cells([r for r in rows if r.method == "none"], lambda r: (r.size, r.mode, r.cond))
            header = ["n", "mode", "copies"] + (["no DA"] if has_none else []) + \
                [f"degree {d:g}" for d in degrees] + ["best degree"]
            body = []
            for k in keys:
                row_cells = {d: cells[(k, d)] for d in degrees if (k, d) in cells}
                texts = _bold_best(row_cells)
                best = max(row_cells, key=lambda d: (row_cells[d].mean, -_sort_key(d)[1]))
                label = k[1].upper() + (f" ({_cond_label(k[3])})" if k[3] else "")
                b = base.get((k[0], k[1], k[3]))
                body.append([_size_name(k[0]), label, str(k[2])] + ([b.text() if b else ""] if has_none else [])
                            + [texts.get(d, "") for d in degrees] + [f"{best:g}"])
            lines += [f"### {_task_name(task)}: {method}, dev score vs degree", ""]
            lines += _markdown_table(header, body, ["---:", "---", "---:"] + ["---:"] * (len(header) - 3))
            lines += [""]
            lines += self.best_degree_table(task, method, deg_rows)
            lines += self.copies_gain_table(task, method, deg_rows)
        return lines

    def copies_gain_table(self, task: str, method: str, deg_rows: list[_Row]) -> list[str]:
        """Per mode and size: how the most copies compare with one copy, over the degrees above 0
        that both were run at (mean difference of the cell means, and at how many degrees it is
        positive). Empty when only one copies value was run."""
        copies = sorted({r.copies for r in deg_rows})
        if len(copies) < 2 or copies[0] != 1:
            return []
        most = copies[-1]
        cells = self._cells(deg_rows, lambda r: ((r.mode, r.cond, r.size), r.copies, r.degree))
        seeds = self._seed_scores(deg_rows, lambda r: ((r.mode, r.cond, r.size), r.copies, r.degree))
        sizes = sorted({r.size for r in deg_rows}, key=_sort_key)
        keys = sorted({(r.mode, r.cond) for r in deg_rows}, key=lambda k: (_mode_key(k[0]), repr(k[1])))
        body = []
        for mode, cond in keys:
            row = [mode.upper() + (f" ({_cond_label(cond)})" if cond else "")]
            for size in sizes:
                k = (mode, cond, size)
                pairs = [pair(seeds[(k, most, d)], seeds[(k, 1, d)])
                         for d in sorted({r.degree for r in deg_rows}, key=_sort_key)
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
        return [f"{most} copies vs 1, {_task_name(task)}, {method}: mean paired difference of the dev score ×100 over "
                "the degrees above 0, at how many of them the extra copies scored higher, and at how many the "
                "paired 95 % interval lies above 0 (*ahead*) or below 0 (*behind*):", ""] + \
            _markdown_table(["mode"] + [f"n={_size_name(s)}" for s in sizes], body) + [""]

    def _degree_cells(self, deg_rows: list[_Row]) -> dict[tuple, Cell]:
        """((mode, copies, cond, size), degree) -> cell."""
        return self._cells(deg_rows, lambda r: ((r.mode, r.copies, r.cond, r.size), r.degree))

    @staticmethod
    def _best_degrees(cells: dict[tuple, Cell]) -> dict[tuple, tuple[float, Cell]]:
        """(mode, copies, cond, size) -> (best degree, its cell), from :meth:`_degree_cells`."""
        best: dict[tuple, tuple[float, Cell]] = {}
        for (key, degree), cell in sorted(cells.items(), key=lambda kv: (repr(kv[0][0]), _sort_key(kv[0][1]))):
            if key not in best or round(cell.mean, 6) > round(best[key][1].mean, 6):
                best[key] = (degree, cell)
        return best

    def best_degree_table(self, task: str, method: str, deg_rows: list[_Row]) -> list[str]:
        cells = self._degree_cells(deg_rows)
        seeds = self._seed_scores(deg_rows, lambda r: ((r.mode, r.copies, r.cond, r.size), r.degree))
        best = self._best_degrees(cells)
        sizes = sorted({k[3] for k in best}, key=_sort_key)
        lines_keys = sorted({k[:3] for k in best}, key=lambda k: (_mode_key(k[0]), k[1], repr(k[2])))
        header = ["mode", "copies"] + [f"n={_size_name(s)}" for s in sizes]

        def text(key: tuple) -> str:
            degree, cell = best[key]
            others = sorted(((d, c) for (k, d), c in cells.items() if k == key and d != degree),
                            key=lambda dc: (-dc[1].mean, _sort_key(dc[0])))
            if not others:
                return f"{degree:g} ({cell.mean:.1f})"
            d2, c2 = others[0]
            lead = pair(seeds[(key, degree)], seeds[(key, d2)])
            mark = "" if lead.n < 2 else f", {describe(lead)}"
            return f"{degree:g} ({cell.mean:.1f}; {lead.text()} over {d2:g}{mark})"

        body = []
        for lk in lines_keys:
            label = lk[0].upper() + (f" ({_cond_label(lk[2])})" if lk[2] else "")
            body.append([label, str(lk[1])] + [text((*lk, s)) if (*lk, s) in best else "" for s in sizes])
        return [f"Best degree per training-set size, {_task_name(task)}, {method}: its mean score, its paired lead "
                "over the runner-up degree (mean [95 % interval] over seeds), and whether that lead is *ahead* (the "
                "interval above 0) or undecided (with the seeds that would settle it at this spread):", ""] + \
            _markdown_table(header, body, ["---", "---:"] + ["---:"] * len(sizes)) + [""]

    # ---- figures
    def curves_figure(self, out: Path, task: str) -> None:
        """Learning curves of runs that evaluated every epoch: score vs step, validation split solid,
        dev dashed, one panel per training-set size (a pilot that sets the grids' budgets)."""
        rows = [r for r in self.rows if r.task == task and len(r.history) >= 2]
        if not rows:
            return
        plt = _plt()
        sizes = sorted({r.size for r in rows}, key=_sort_key)
        fig, axes = plt.subplots(1, len(sizes), figsize=(5.2 * len(sizes), 4.2), squeeze=False)
        for ax, size in zip(axes[0], sizes):
            sel = sorted((r for r in rows if r.size == size), key=lambda r: (_variant_key(r), _sort_key(r.seed)))
            for i, r in enumerate(sel):
                label = _variant_label(r.mode, r.method, r.degree, r.copies, r.cond)
                steps = [h["step"] for h in r.history]
                color = f"C{i % 10}"
                if any("val" in h for h in r.history):
                    ax.plot(steps, [h.get("val", math.nan) * 100 for h in r.history], color=color, marker="o",
                            markersize=3, label=f"{label}: val")
                if any("dev" in h for h in r.history):
                    ax.plot(steps, [h.get("dev", math.nan) * 100 for h in r.history], color=color, linestyle="--",
                            linewidth=1, label=f"{label}: dev")
            ax.set_title(f"n={_size_name(size)}")
            ax.set_xlabel("optimizer steps (batch 32)")
            ax.set_ylabel("score ×100")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6)
        fig.suptitle(f"{_task_name(task)}: learning curves (evaluated after every epoch)")
        fig.tight_layout()
        name = f"curves_{_slug(task)}.png"
        _save(fig, out / name)
        self.figures.append((name, f"{_task_name(task)}: learning curves, validation split (solid) and dev (dashed)"))

    def paired_figure(self, out: Path, task: str) -> None:
        """Each variant's paired difference to FT without augmentation, with its 95 % interval as the
        error bar, one panel per training-set size (only where some variant has 2 paired seeds)."""
        rows = [r for r in self.rows if r.task == task]
        sizes = sorted({r.size for r in rows}, key=_sort_key)
        seeds = self._seed_scores(rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), r.size))
        panels = []
        for size in sizes:
            found = []
            for v in self.variants([r for r in rows if r.size == size]):
                ref = ("ft", "none", None, 1, v[4])
                if v == ref or (v, size) not in seeds or (ref, size) not in seeds:
                    continue
                d = pair(seeds[(v, size)], seeds[(ref, size)])
                if d.n >= 2:
                    found.append((v, d))
            if found:
                panels.append((size, found))
        if not panels:
            return
        plt = _plt()
        height = max(2.5, 0.35 * max(len(f) for _, f in panels) + 1.2)
        fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), height), squeeze=False)
        for ax, (size, found) in zip(axes[0], panels):
            ys = list(range(len(found)))[::-1]
            means = [d.mean for _, d in found]
            errs = [d.half_width for _, d in found]
            colors = [_MODE_COLORS.get(v[0], "gray") for v, _ in found]
            ax.barh(ys, means, xerr=errs, color=colors, edgecolor="black", linewidth=0.5, capsize=3)
            ax.axvline(0, color="black", linewidth=0.8)
            ax.set_yticks(ys)
            ax.set_yticklabels([_variant_label(*v) for v, _ in found], fontsize=7)
            ax.set_title(f"n={_size_name(size)} ({found[0][1].n} seeds)")
            ax.set_xlabel("paired difference to FT, dev ×100 (95 % CI)")
            ax.grid(axis="x", alpha=0.3)
        fig.suptitle(f"{_task_name(task)}: each method minus FT without augmentation, same seeds")
        fig.tight_layout()
        name = f"paired_{_slug(task)}.png"
        _save(fig, out / name)
        self.figures.append((name, f"{_task_name(task)}: paired difference to FT without augmentation (95 % intervals)"))

    def methods_figure(self, out: Path, task: str) -> None:
        rows = [r for r in self.rows if r.task == task]
        variants = self.variants(rows)
        if len(variants) < 2:
            return
        plt = _plt()
        sizes = sorted({r.size for r in rows}, key=_sort_key)
        cells = self._cells(rows, lambda r: ((r.mode, r.method, r.degree, r.copies, r.cond), r.size))
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
            ax.bar(xs, ys, width=width, yerr=es, capsize=3, label=f"n={_size_name(size)}",
                   color=f"C{j % 10}", edgecolor="black", linewidth=0.5)
        lo = min(c.mean - c.std for c in cells.values())
        hi = max(c.mean + c.std for c in cells.values())
        pad = max(1.0, 0.1 * (hi - lo))
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels([_variant_label(*v) for v in variants], rotation=40, ha="right", fontsize=8)
        ax.set_ylabel("dev score ×100 (mean ± std over seeds)")
        ax.set_xlabel("method")
        ax.set_title(f"{_task_name(task)}: method comparison")
        ax.legend(title="training-set size", fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        name = f"methods_{_slug(task)}.png"
        _save(fig, out / name)
        self.figures.append((name, f"{_task_name(task)}: dev score per method and training-set size"))

    def degree_figure(self, out: Path, task: str, method: str, rows: list[_Row], suffix: str) -> None:
        plt = _plt()
        deg_rows = [r for r in rows if r.method == method]
        sizes = sorted({r.size for r in deg_rows}, key=_sort_key)
        cells = self._cells(deg_rows, lambda r: ((r.size, r.mode, r.copies, r.cond), r.degree))
        base = self._cells([r for r in rows if r.method == "none"], lambda r: (r.size, r.mode, r.cond))
        line_keys = sorted({(r.mode, r.copies, r.cond) for r in deg_rows},
                           key=lambda k: (_mode_key(k[0]), k[1], repr(k[2])))
        fig, axes = plt.subplots(1, len(sizes), figsize=(4.5 * len(sizes) + 1, 4.5), squeeze=False)
        for ax, size in zip(axes[0], sizes):
            for i, lk in enumerate(line_keys):
                pts = sorted(((d, c) for (k, d), c in cells.items() if k == (size, *lk)), key=lambda t: _sort_key(t[0]))
                if not pts:
                    continue
                label = f"{lk[0].upper()} ×{lk[1]}" + (f" {_cond_label(lk[2])}" if lk[2] else "")
                ax.errorbar([d for d, _ in pts], [c.mean for _, c in pts], yerr=[c.std for _, c in pts],
                            color=_MODE_COLORS.get(lk[0], f"C{i % 10}"), capsize=3, label=label,
                            **_line_style(sorted({k[1] for k in line_keys}).index(lk[1])))
            for mode in sorted({k[0] for k in line_keys}, key=_mode_key):
                for cond in sorted({k[2] for k in line_keys}, key=repr):
                    b = base.get((size, mode, cond))
                    if b is not None:
                        ax.axhline(b.mean, color=_MODE_COLORS.get(mode, "gray"), linestyle=(0, (1, 3)), linewidth=1.2,
                                   label=f"{mode.upper()} no DA" + (f" {_cond_label(cond)}" if cond else ""))
            _decorate_panel(ax, size, f"degree (share of tokens changed, {method})")
        fig.suptitle(f"{_task_name(task)}: dev score vs augmentation degree (mean ± std over seeds)")
        fig.tight_layout()
        name = f"degree_{suffix}.png"
        _save(fig, out / name)
        self.figures.append((name, f"{_task_name(task)}: dev score vs degree ({method}), KD and FT, "
                                   "one panel per training-set size"))

    def best_degree_figure(self, out: Path, task: str, method: str, rows: list[_Row], suffix: str) -> None:
        deg_rows = [r for r in rows if r.method == method]
        best = self._best_degrees(self._degree_cells(deg_rows))
        sizes = sorted({k[3] for k in best if k[3] is not None})
        if len(sizes) < 2:
            return
        plt = _plt()
        line_keys = sorted({k[:3] for k in best}, key=lambda k: (_mode_key(k[0]), k[1], repr(k[2])))
        copies_values = sorted({k[1] for k in line_keys})
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        degrees = sorted({r.degree for r in deg_rows if r.degree is not None})
        for i, lk in enumerate(line_keys):
            pts = [(s, best[(*lk, s)][0]) for s in sizes if (*lk, s) in best]
            label = f"{lk[0].upper()} ×{lk[1]}" + (f" {_cond_label(lk[2])}" if lk[2] else "")
            shift = 1.025 ** (i - (len(line_keys) - 1) / 2)  # keep overlapping lines visible
            ax.plot([p[0] * shift for p in pts], [p[1] for p in pts], color=_MODE_COLORS.get(lk[0], f"C{i % 10}"),
                    label=label, alpha=0.9, **_line_style(copies_values.index(lk[1])))
        ax.set_yticks(degrees)
        ax.set_ylim(min(degrees) - 0.05, max(degrees) + 0.05)
        ax.set_xscale("log")
        ax.set_xticks(sizes)
        ax.set_xticklabels([_size_name(s) for s in sizes])
        ax.minorticks_off()
        ax.set_xlabel("training-set size (rows, log scale; lines nudged apart)")
        ax.set_ylabel(f"best degree ({method})")
        ax.set_title(f"{_task_name(task)}: best degree vs training-set size")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        name = f"best_degree_{suffix}.png"
        _save(fig, out / name)
        self.figures.append((name, f"{_task_name(task)}: best degree ({method}) vs training-set size, KD and FT"))

    def copies_figure(self, out: Path, task: str, method: str, rows: list[_Row], suffix: str) -> None:
        deg_rows = [r for r in rows if r.method == method]
        if len({r.copies for r in deg_rows}) < 2:
            return
        plt = _plt()
        sizes = sorted({r.size for r in deg_rows}, key=_sort_key)
        cells = self._cells(deg_rows, lambda r: ((r.size, r.mode, r.cond), r.degree, r.copies))
        base = self._cells([r for r in rows if r.method == "none"], lambda r: (r.size, r.mode, r.cond))
        line_keys = sorted({(r.mode, r.cond) for r in deg_rows}, key=lambda k: (_mode_key(k[0]), repr(k[1])))
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
                best_d = max(sorted(by_degree, key=_sort_key), key=lambda d: sum(by_degree[d]) / len(by_degree[d]))
                pts = sorted((c, cell) for (d, c), cell in mine.items() if d == best_d)
                b = base.get((size, *lk))
                xs = ([0] if b else []) + [c for c, _ in pts]
                ys = ([b.mean] if b else []) + [cell.mean for _, cell in pts]
                es = ([b.std] if b else []) + [cell.std for _, cell in pts]
                xs_all.update(xs)
                dlabel = "" if best_d is None else f", degree {best_d:g}"
                ax.errorbar(xs, ys, yerr=es, color=_MODE_COLORS.get(lk[0], f"C{i % 10}"), capsize=3,
                            label=f"{lk[0].upper()}{dlabel}" + (f" {_cond_label(lk[1])}" if lk[1] else ""),
                            **_line_style(i))
            ax.set_xticks(sorted(xs_all))
            _decorate_panel(ax, size, "augmented copies per example (0 = no DA)")
        fig.suptitle(f"{_task_name(task)}: dev score vs copies ({method}, each mode at its best degree)")
        fig.tight_layout()
        name = f"copies_{suffix}.png"
        _save(fig, out / name)
        self.figures.append((name, f"{_task_name(task)}: dev score vs copies per example ({method}), KD and FT"))

    # ---- all
    def write(self, out: Path) -> None:
        plt = _plt()
        with plt.style.context("default"):
            for task in self.tasks:
                self.methods_figure(out, task)
                self.paired_figure(out, task)
                self.curves_figure(out, task)
            for task, method, rows, suffix in self.degree_groups():
                self.degree_figure(out, task, method, rows, suffix)
                self.best_degree_figure(out, task, method, rows, suffix)
                self.copies_figure(out, task, method, rows, suffix)
        (out / "README.md").write_text(self.markdown(), encoding="utf-8")

    def markdown(self) -> str:
        n_runs = len(self.rows)
        seeds = sorted({r.seed for r in self.rows}, key=_sort_key)
        lines = ["# Study results", "",
                 f"{n_runs} finished runs over {len(self.tasks)} task(s) and {len(seeds)} seed(s). Cells: dev score "
                 "×100 as `mean ± std (n=seeds)` (std over seeds, ddof=1). The score is accuracy (SST-2, RTE), "
                 "Matthews correlation (CoLA), the mean of F1 and accuracy (MRPC) and of Pearson and Spearman "
                 "(STS-B). Bold: the best mean in its column (methods) or row (degrees). Regenerate with "
                 "`augpro report results.jsonl --output DIR`.", ""]
        if self.cond_keys:
            lines += ["Settings that vary within a task and size besides mode, method, degree, copies and seed: "
                      + ", ".join(f"`{k}`" for k in self.cond_keys) + ".", ""]
        lines += ["## Method comparison", ""]
        if self.teacher_cells():
            lines += ["`teacher`: the fine-tuned teacher the KD students learn from (one per task, size and seed).",
                      ""]
        lines += self.methods_table() + [""]
        paired_intro = ("Runs with the same seed share their training subset, initialisation and data order, so "
                        "each comparison is the mean of the per-seed differences (dev score ×100) with its 95 % "
                        "Student-t interval over the seeds: `mean [low, high]`. Bold: the interval excludes 0.")
        sections = [("against the same mode without augmentation", self.paired_table("nodata")),
                    ("against FT without augmentation", self.paired_table("ft")),
                    ("against the best other method of the column (by mean)", self.paired_table("best"))]
        if any(t for _, t in sections):
            lines += ["## Paired differences", "", paired_intro, ""]
            for title, table in sections:
                if table:
                    lines += [f"### Each method {title}", ""] + table + [""]
        claim = self.augpro_table()
        if claim:
            lines += ["## AugPro against the other augmentation methods (KD)", "",
                      "Per column, the best AugPro variant against the best other augmentation (both picked by "
                      "mean), compared seed by seed: *ahead* or *behind* when the paired 95 % interval excludes 0, "
                      "else *undecided*, with the number of seeds that would settle it at the measured spread.", ""]
            lines += claim + [""]
        deg = self.degree_tables()
        if deg:
            lines += ["## Degree of augmentation", ""] + deg
        curves = self.curves_table()
        if curves:
            lines += ["## Learning curves", "",
                      "Runs that evaluated after every epoch on the validation split carved from the training rows "
                      "(`val-size`) and on dev. Budgets are read off the validation column only.", ""]
            lines += curves + [""]
        aug = self.augmentation_table()
        if aug:
            lines += ["## Augmentation statistics", "",
                      "Realised degree: mean share of eligible tokens changed per augmented example. Label-flip "
                      "rate: share of augmented examples on which the teacher predicts another class than on their "
                      "source (KD runs on classification tasks only).", ""]
            lines += aug + [""]
        lines += ["## Runtime", "", "Mean wall-clock seconds per run (training and evaluation, teacher excluded).",
                  ""] + self.runtime_table() + [""]
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
        if old.name.startswith(_FIG_PATTERNS):
            old.unlink()
    Report(rows).write(out)
    print(f"augpro report: {len(rows)} runs -> {out / 'README.md'} and {len(list(out.glob('*.png')))} figure(s)")
