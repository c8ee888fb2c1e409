"""The rows of a study report: finished runs read from ``results.jsonl``, flattened, labelled and grouped.

:func:`load_rows` reads the finished runs; :class:`Row` flattens one; :class:`Cell` holds the scores of
one table cell (mean ± std over seeds); the selections (:func:`group_cells`, :func:`seed_scores`,
:func:`columns_of`, :func:`variants_of`, :func:`degree_groups`, ...) group rows into the cells that
the tables (:mod:`augpro.report_tables`), the paired comparisons (:mod:`augpro.report_verdicts`) and
the figures (:mod:`augpro.report_figures`) show. Everything is sorted, so a report depends only on
the results' content.
"""

from __future__ import annotations

import math
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Collection, Iterable

from augpro.errors import UserError

#: settings that never define a table cell (seed is averaged over; the rest are bookkeeping)
_NOT_CONDITIONS = {"seed", "output_dir", "teacher", "data_dir", "progress", "threads", "resume", "cache",
                   "save_checkpoints", "eval_every_epoch", "task", "train_size", "mode", "augment", "degree",
                   "copies", "extra"}
_TASK_ORDER = ["sst2", "mrpc", "rte", "cola", "stsb", "qnli", "qqp", "mnli", "wnli"]
_TASK_NAMES = {"sst2": "SST-2", "mrpc": "MRPC", "rte": "RTE", "cola": "CoLA", "stsb": "STS-B", "qnli": "QNLI",
               "qqp": "QQP", "mnli": "MNLI", "wnli": "WNLI"}
_METHOD_ORDER = ["none", "knn", "mask", "random", "synonym", "eda", "mixkd", "fgsm", "augpro-mix", "augpro-fgsm"]
_MODE_ORDER = ["kd", "ft"]
#: the AugPro methods (projected augmentation); the AugPro table sets them against every other one
AUGPRO_METHODS = ("augpro-mix", "augpro-fgsm")


# --------------------------------------------------------------------------- reading


def load_rows(results_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Finished runs with a numeric score, first line per run_id, sorted by run_id."""
    from augpro.study_results import read_results

    path = Path(results_path)
    if not path.is_file():
        raise UserError(f"results file {path} not found")
    rows = [r for r in read_results(path) if isinstance(r.get("score"), (int, float))
            and math.isfinite(r["score"]) and isinstance(r.get("settings"), dict)]
    if not rows:
        raise UserError(f"{path} holds no finished runs")
    return sorted(rows, key=lambda r: str(r["run_id"]))


def sort_key(value: Any) -> tuple:
    """Total order over None, numbers and strings (None first)."""
    if value is None:
        return (0, 0, "")
    if isinstance(value, bool):
        return (1, int(value), "")
    if isinstance(value, (int, float)):
        return (1, float(value), "")
    return (2, 0, str(value))


def task_key(task: str) -> tuple:
    return (_TASK_ORDER.index(task) if task in _TASK_ORDER else len(_TASK_ORDER), task)


def method_key(method: str) -> tuple:
    return (_METHOD_ORDER.index(method) if method in _METHOD_ORDER else len(_METHOD_ORDER), method)


def mode_key(mode: str) -> tuple:
    return (_MODE_ORDER.index(mode) if mode in _MODE_ORDER else len(_MODE_ORDER), mode)


def task_name(task: str) -> str:
    return _TASK_NAMES.get(task, task)


def size_name(size: Any) -> str:
    return "all" if size is None else f"{size:,}"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", str(text).lower()).strip("-") or "x"


def condition_keys(rows: list[dict[str, Any]]) -> list[str]:
    """Settings (beyond task/size/mode/method/degree/copies/seed) that vary among the runs of one
    task, training-set size and mode (a setting chosen per task, like ``max_length``, or per mode,
    like the hidden-state KD weight that KD students of pair tasks get and FT students cannot, is
    not one)."""
    values: dict[tuple, set] = defaultdict(set)
    for r in rows:
        s = r["settings"]
        group = (repr(r.get("task", s.get("task"))), repr(r.get("train_size", s.get("train_size"))),
                 repr(r.get("mode", s.get("mode"))))
        for k, v in s.items():
            if k not in _NOT_CONDITIONS:
                values[(k, group)].add(repr(v))
    return sorted({k for (k, _), vs in values.items() if len(vs) > 1})


class Row:
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
        self.run_id = str(raw.get("run_id", ""))
        self.finished = str(raw.get("finished_at") or "")
        self.score = float(raw["score"]) * 100
        self.cond = tuple((k, s.get(k)) for k in cond_keys)
        self.realised = raw.get("realised_degree")
        self.flips = raw.get("label_flip_rate")
        self.runtime = raw.get("runtime_s")
        self.teacher_id = raw.get("teacher_id")
        self.teacher_weights = raw.get("teacher_weights")
        tdev = raw.get("teacher_dev") or {}
        self.teacher_score = float(tdev["score"]) * 100 if isinstance(tdev.get("score"), (int, float)) else None
        self.history = [h for h in (raw.get("history") or []) if isinstance(h, dict) and "step" in h]
        val = raw.get("val") or {}
        self.val_score = float(val["score"]) * 100 if isinstance(val.get("score"), (int, float)) else None


def cond_label(cond: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in cond)


def variant_key(r: Row) -> tuple:
    return (mode_key(r.mode), method_key(r.method), sort_key(r.degree), r.copies,
            tuple(sort_key(v) for _, v in r.cond))


def variant_label(mode: str, method: str, degree: Any, copies: int, cond: tuple) -> str:
    return f"{mode.upper()} {method_label(method, degree, copies, cond)}"


def method_label(method: str, degree: Any, copies: int, cond: tuple) -> str:
    text = method
    bits = []
    if degree is not None:
        bits.append(f"degree {degree:g}")
    if copies != 1:
        bits.append(f"×{copies}")
    if cond:
        bits.append(cond_label(cond))
    return text + (f" ({', '.join(bits)})" if bits else "")


# --------------------------------------------------------------------------- statistics


class Cell:
    """The scores of one table cell: mean and std (ddof=1) over seeds."""

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


def mean_or_none(values: list[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


# --------------------------------------------------------------------------- selections


def group_cells(rows: Iterable[Row], key) -> dict[Any, Cell]:
    """key -> the cell of the scores of the rows with that key."""
    groups: dict[Any, list[float]] = defaultdict(list)
    for r in rows:
        groups[key(r)].append(r.score)
    return {k: Cell(v) for k, v in groups.items()}


def seed_scores(rows: Iterable[Row], key) -> dict[Any, dict[Any, float]]:
    """key -> {seed: score}: the per-seed scores that paired comparisons match up."""
    out: dict[Any, dict[Any, float]] = defaultdict(dict)
    for r in rows:
        out[key(r)][r.seed] = r.score
    return dict(out)


def columns_of(rows: Iterable[Row]) -> list[tuple[str, Any]]:
    """The (task, training-set size) columns of the tables, in report order."""
    return sorted({(r.task, r.size) for r in rows}, key=lambda c: (task_key(c[0]), sort_key(c[1])))


def variants_of(rows: Iterable[Row]) -> list[tuple]:
    """The (mode, method, degree, copies, conditions) variants of ``rows``, in report order."""
    seen = {}
    for r in rows:
        seen.setdefault((r.mode, r.method, r.degree, r.copies, r.cond), variant_key(r))
    return sorted(seen, key=lambda v: seen[v])


def ft_reference(variant: tuple, column: Any, keys: Collection[tuple]) -> tuple | None:
    """The FT-without-augmentation variant that ``variant`` is set against in ``column``: the one
    under the same conditions, else the column's only one (conditions that only KD has, like a
    hidden-state KD weight, leave FT with one variant); None when neither exists. ``keys``: the
    (variant, column) pairs that have scores (a dict keyed by them will do)."""
    same = ("ft", "none", None, 1, variant[4])
    if (same, column) in keys:
        return same
    fts = sorted({v for v, c in keys if c == column and v[:4] == ("ft", "none", None, 1)}, key=repr)
    return fts[0] if len(fts) == 1 else None


def short_labels(variants: Iterable[tuple], width: int = 40) -> dict[tuple, str]:
    """Labels for a figure of one task: each variant's label naming only the conditions that vary
    among the figure's variants of the same mode, wrapped at ``width`` characters."""
    import textwrap

    variants = list(variants)
    values: dict[tuple, set] = defaultdict(set)
    for mode, _, _, _, cond in variants:
        for k, v in cond:
            values[(mode, k)].add(repr(v))
    out = {}
    for v in variants:
        cond = tuple((k, x) for k, x in v[4] if len(values[(v[0], k)]) > 1)
        out[v] = textwrap.fill(variant_label(*v[:4], cond), width)
    return out


def tasks_of(rows: Iterable[Row]) -> list[str]:
    """The tasks of ``rows`` in report order."""
    return sorted({r.task for r in rows}, key=task_key)


def degree_groups(rows: list[Row]) -> list[tuple[str, str, list[Row], str]]:
    """(task, method, rows of that task/method plus its no-augmentation runs, file suffix): one
    degree sweep per task and method run at two or more explicit degrees.

    A sweep holds only the method's runs with an explicit degree: a run without one (degree None,
    the method's default, as in a methods study) has no place on a degree axis, so when such runs
    share a results file with a sweep of the same method they stay out of it (the methods table
    still lists them)."""
    out = []
    for task in tasks_of(rows):
        trows = [r for r in rows if r.task == task]
        methods = sorted({r.method for r in trows if r.degree is not None}, key=method_key)
        methods = [m for m in methods if len({r.degree for r in trows if r.method == m and r.degree is not None}) >= 2]
        for m in methods:
            suffix = slug(task) + ("" if len(methods) == 1 else f"_{slug(m)}")
            out.append((task, m, [r for r in trows if r.method == "none" or (r.method == m and r.degree is not None)],
                        suffix))
    return out


def degree_cells(deg_rows: list[Row]) -> dict[tuple, Cell]:
    """((mode, copies, cond, size), degree) -> cell."""
    return group_cells(deg_rows, lambda r: ((r.mode, r.copies, r.cond, r.size), r.degree))


def best_degrees(cells: dict[tuple, Cell]) -> dict[tuple, tuple[float, Cell]]:
    """(mode, copies, cond, size) -> (best degree, its cell), from :func:`degree_cells`."""
    best: dict[tuple, tuple[float, Cell]] = {}
    for (key, degree), cell in sorted(cells.items(), key=lambda kv: (repr(kv[0][0]), sort_key(kv[0][1]))):
        if key not in best or round(cell.mean, 6) > round(best[key][1].mean, 6):
            best[key] = (degree, cell)
    return best

