"""Which teacher taught which runs of a study report, and what to do when a teacher was retrained.

A study trains each teacher once and caches it, but a grid resumed on another machine retrains the
teachers it lacks, and a retrained teacher keeps its id (its settings) without always keeping its
weights: bf16 kernels round differently on different CPUs. KD runs taught by two versions of one
teacher are not a pair: their difference mixes the method with the teacher. So the report keeps,
per teacher, the KD runs of its *main* version (the one that taught the most runs; on a tie, the one
that taught the latest) and leaves the others out of its tables and comparisons, naming them
(:func:`retrained_teachers_note`). FT runs have no teacher and are always kept.

Versions are told apart by ``teacher_weights`` (the weights' fingerprint, in the lines that record
it) where it tells more of them apart than the teacher's dev score (in every KD line), else by the
dev score: lines written before fingerprints were recorded then fall in with the later lines of
the same score.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from augpro.report_rows import Cell, Row, size_name, sort_key, task_name, variant_label

TeacherKey = tuple[str, Any, Any]  # (task, training-set size, teacher id; the seed where no id was recorded)


def teacher_versions(rows: list[Row]) -> dict[TeacherKey, dict[Any, list[Row]]]:
    """Teacher -> {version: the KD rows it taught}; a version is a fingerprint or a dev score."""
    taught: dict[TeacherKey, list[Row]] = defaultdict(list)
    for r in rows:
        if r.teacher_score is not None:
            taught[(r.task, r.size, r.teacher_id or r.seed)].append(r)
    out: dict[TeacherKey, dict[Any, list[Row]]] = {}
    for key, kd in taught.items():
        n_weights = len({r.teacher_weights for r in kd if r.teacher_weights})
        by_weights = n_weights > len({r.teacher_score for r in kd})
        groups: dict[Any, list[Row]] = defaultdict(list)
        for r in kd:
            groups[r.teacher_weights if by_weights else r.teacher_score].append(r)
        out[key] = dict(groups)
    return out


def _main_version(versions: dict[Any, list[Row]]) -> Any:
    return max(versions, key=lambda v: (len(versions[v]), max(r.finished for r in versions[v]), sort_key(v)))


def split_by_teacher_version(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """(kept, left out): the rows without the KD rows taught by another version of their teacher
    than its main one, and those rows."""
    left_out: set[int] = set()
    for versions in teacher_versions(rows).values():
        main = _main_version(versions)
        left_out.update(id(r) for v, group in versions.items() if v != main for r in group)
    return [r for r in rows if id(r) not in left_out], [r for r in rows if id(r) in left_out]


def teacher_cells(rows: list[Row]) -> dict[tuple, Cell]:
    """(task, size) -> the dev scores ×100 of the teachers (one per teacher and version)."""
    groups: dict[tuple, list[float]] = defaultdict(list)
    for (task, size, _), versions in sorted(teacher_versions(rows).items(), key=lambda kv: repr(kv[0])):
        groups[(task, size)].extend(sorted(group[0].teacher_score for group in versions.values()))
    return {k: Cell(v) for k, v in groups.items()}


def retrained_teachers_note(rows: list[Row]) -> list[str]:
    """For each teacher whose KD runs were taught by more than one version: the versions and the
    runs left out of the report (see :func:`split_by_teacher_version`); empty when none was."""
    lines = []
    for (task, size, tid), versions in sorted(teacher_versions(rows).items(), key=lambda kv: repr(kv[0])):
        if len(versions) < 2:
            continue
        main = _main_version(versions)
        devs = ", ".join(f"{s:.2f}" for s in sorted({g[0].teacher_score for g in versions.values()}))
        lines.append(f"- {task_name(task)} n={size_name(size)}: KD runs taught by {len(versions)} versions of "
                     f"teacher {tid} (dev {devs}): the same settings, retrained on another machine. Kept: the "
                     f"{len(versions[main])} runs of the version with dev {versions[main][0].teacher_score:.2f}. "
                     "Left out of the tables and comparisons:")
        for v in sorted((v for v in versions if v != main), key=sort_key):
            for r in sorted(versions[v], key=lambda r: (sort_key(r.seed), r.run_id)):
                lines.append(f"  - {variant_label(r.mode, r.method, r.degree, r.copies, r.cond)}, seed {r.seed}: "
                             f"{r.score:.1f} (run {r.run_id}, teacher dev {r.teacher_score:.2f})")
    return ["**Retrained teachers.**", ""] + lines + [""] if lines else []
